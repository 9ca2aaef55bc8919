// head_slice_test.cu: the head split on the GPU (kernels/gpu/head_slice.h, the GPU backend's
// head_slice_*) against the host.
//   Merge: gpu::f32_head_rows_merge against head_row_merge (src/backend/head_split.cpp), the host
//     twin the CPU backend runs. The contract is bit-identity (the same candidates, order, count,
//     flags and untouched bytes), so every HeadRow is compared with memcmp, no tolerance: rows of
//     normal logits, heavy ties, signed zeros, NaN (sprinkled, first, everywhere), infinities,
//     one constant value, float extremes and clustered top logits (the kernel's radix-select
//     fallback), for k = 1, 2, 5 and 64, merged over 2-3 consecutive slices of widths 1, 7, 1000
//     and 100544 (two of those: 20b's whole vocabulary).
//   Init: gpu::head_rows_init against head_row_init and the gathered rows, bytewise.
//   Backend: a GPU backend's head slices over a tiny random model (vocab 2000) in 2-3 slices
//     against head_row_merge over the same backend's whole-head logits (head()): bit-identical,
//     because a slice runs the whole head's kernels for the same row count (1, 3, 6 and 12 rows:
//     the decode kernel, the GEMV and the GEMM) and each output's sum depends on K only. Then a
//     sanity bound against the CPU backend's head (fp32 KV caches on both: logits within 1e-3 of
//     the row's largest magnitude, the tolerance of fp32 summation order on this model, see
//     engine_test.cu), and a backend without the ends (a later rank) that uploads its slice on
//     first use.
// Timings of the merge kernel on 256 rows of a 100544-id slice are printed (event-timed).
#include <gtest/gtest.h>

#include <unistd.h>

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "backend/head_split.h"
#include "backend_gpu/gpu_backend.h"
#include "common/bf16.h"
#include "gpu/head_slice.h"
#include "gpu_test_util.h"
#include "tiny_model.h"
#include "model/config.h"
#include "model/model_file.h"

namespace gptoss {
namespace {
using gputest::DevBuf;
using gputest::Rng;

float f32_bits(uint32_t b) {
  float f;
  std::memcpy(&f, &b, 4);
  return f;
}
// Quiet NaNs with different payloads and signs (a NaN's bits must travel unchanged).
float nan_of(Rng& r) {
  static const uint32_t kNans[] = {0x7fc00000u, 0xffc00000u, 0x7fc00123u, 0xffd5a5a5u, 0x7fffffffu};
  return f32_bits(kNans[r.g() % 5]);
}

enum class Fill {
  normal,          // N(0, 3)
  ties,            // N(0, 1) rounded to halves, zeros of either sign: thousands of equal logits
  signed_zeros,    // only +0 and -0: equal under the host's comparisons
  nan_sprinkled,   // normal, 1 in 200 NaN, and a NaN at the first id of every slice
  nan_first,       // the first slice all NaN, the others normal
  all_nan,         // every id NaN
  inf_sprinkled,   // normal, 1 in 300 +inf or -inf
  constant,        // one value everywhere: the radix select runs to its last digit
  extremes,        // +-FLT_MAX, +-FLT_MIN, subnormals, ties among them
  // Large logits on the ids j % 512 < 16 only, i.e. in 16 of the kernel's 512 threads: on a wide
  // slice thousands of keys reach the take-th largest thread maximum, so the kernel takes its
  // radix-select fallback (the other fills do not).
  clustered,       // 100 + N(0, 1) rounded to quarters there, N(0, 1) elsewhere
  clustered_ties,  // exactly 100 there: the radix select runs to its last digit
};
const char* fill_name(Fill f) {
  static const char* names[] = {"normal",   "ties",          "signed_zeros", "nan_sprinkled",
                                "nan_first", "all_nan",      "inf_sprinkled", "constant",
                                "extremes", "clustered",    "clustered_ties"};
  return names[static_cast<int>(f)];
}
constexpr Fill kFills[] = {Fill::normal,        Fill::ties,      Fill::signed_zeros,
                           Fill::nan_sprinkled, Fill::nan_first, Fill::all_nan,
                           Fill::inf_sprinkled, Fill::constant,  Fill::extremes,
                           Fill::clustered,     Fill::clustered_ties};

// One row's logits over all slices (slice s is [off[s], off[s + 1]) of the vector).
std::vector<float> make_row(Fill f, const std::vector<int>& off, Rng& r) {
  const int W = off.back();
  std::vector<float> v(static_cast<size_t>(W));
  for (int j = 0; j < W; ++j) {
    const int s = static_cast<int>(std::upper_bound(off.begin(), off.end(), j) - off.begin()) - 1;
    float x = r.normal(3.0f);
    switch (f) {
      case Fill::normal: break;
      case Fill::ties: {
        x = std::round(r.normal(1.0f) * 2.0f) / 2.0f;
        if (x == 0.0f) x = (r.g() & 1) ? -0.0f : 0.0f;
        break;
      }
      case Fill::signed_zeros: x = (r.g() & 1) ? -0.0f : 0.0f; break;
      case Fill::nan_sprinkled:
        if (j == off[s] || r.g() % 200 == 0) x = nan_of(r);
        break;
      case Fill::nan_first:
        if (s == 0) x = nan_of(r);
        break;
      case Fill::all_nan: x = nan_of(r); break;
      case Fill::inf_sprinkled:
        if (r.g() % 300 == 0) x = (r.g() & 1) ? INFINITY : -INFINITY;
        break;
      case Fill::constant: x = 1.5f; break;
      case Fill::extremes: {
        static const float kVals[] = {FLT_MAX, -FLT_MAX, FLT_MIN, -FLT_MIN, 1e-45f, -1e-45f,
                                      0.0f,    -0.0f,    FLT_MAX, 3e-39f};
        x = kVals[r.g() % 10];
        break;
      }
      case Fill::clustered:
        x = j % 512 < 16 ? 100.0f + std::round(r.normal(1.0f) * 4.0f) / 4.0f : r.normal(1.0f);
        break;
      case Fill::clustered_ties: x = j % 512 < 16 ? 100.0f : r.normal(1.0f); break;
    }
    v[static_cast<size_t>(j)] = x;
  }
  return v;
}

std::string describe(const HeadRow& h) {
  std::string s = strfmt("k %d count %d flags %u:", h.k, h.count, h.flags);
  for (int i = 0; i < std::min(h.count, 6); ++i) {
    uint32_t b;
    std::memcpy(&b, &h.cand[i].value, 4);
    s += strfmt(" (%d, %.9g = 0x%08x)", h.cand[i].id, h.cand[i].value, b);
  }
  return s + (h.count > 6 ? " ..." : "");
}

// Bytewise equality of n HeadRows, with the first differences described.
void expect_rows_equal(const HeadRow* got, const HeadRow* want, size_t n, const std::string& what) {
  int shown = 0;
  for (size_t i = 0; i < n; ++i) {
    if (std::memcmp(&got[i], &want[i], sizeof(HeadRow)) == 0) continue;
    ADD_FAILURE() << what << ", row " << i << ":\n  gpu  " << describe(got[i]) << "\n  host "
                  << describe(want[i]);
    if (++shown == 5) return;
  }
}

// Merges rows' logits over the slices of widths `widths` (ids from v0) on the device and on the
// host, every row of `fills` x `ks`, and compares the rows after the last slice.
void check_merge(const std::vector<int>& widths, int v0, uint64_t seed) {
  std::vector<int> off{0};
  for (int w : widths) off.push_back(off.back() + w);
  const int W = off.back();
  Rng r(seed);
  std::vector<std::vector<float>> logits;
  std::vector<HeadRow> host;
  std::vector<std::string> names;
  for (int k : {1, 2, 5, 64})
    for (Fill f : kFills) {
      logits.push_back(make_row(f, off, r));
      host.push_back(head_row_init(k));
      names.push_back(strfmt("k %d %s", k, fill_name(f)));
    }
  const size_t n = host.size();
  DevBuf<HeadRow> d_rows(host);  // every row fresh: head_row_init's bytes
  std::vector<int32_t> scratch;
  for (size_t s = 0; s < widths.size(); ++s) {
    const int w = widths[s];
    std::vector<float> block(n * static_cast<size_t>(w));
    for (size_t i = 0; i < n; ++i) {
      std::copy_n(logits[i].begin() + off[s], w, block.begin() + i * w);
      head_row_merge(host[i], logits[i].data() + off[s], v0 + off[s], w, scratch);
    }
    DevBuf<float> d_block(block);
    gpu::f32_head_rows_merge(d_block.p, static_cast<int>(n), w, v0 + off[s], d_rows.p, nullptr);
    GPU_CHECK(gpuDeviceSynchronize());
  }
  const std::vector<HeadRow> got = d_rows.download();
  std::string wd;
  for (int w : widths) wd += strfmt("%s%d", wd.empty() ? "" : "+", w);
  for (size_t i = 0; i < n; ++i)
    if (std::memcmp(&got[i], &host[i], sizeof(HeadRow)) != 0)
      ADD_FAILURE() << "slices " << wd << " from id " << v0 << ", " << names[i] << " (" << W
                    << " ids):\n  gpu  " << describe(got[i]) << "\n  host " << describe(host[i]);
}

TEST(GpuHeadSlice, merge_equals_host_narrow_slices) {
  GPU_TEST_REQUIRE_DEVICE();
  check_merge({1, 7}, 0, 1);
  check_merge({7, 1, 7}, 40, 2);
  check_merge({1, 1, 1}, 0, 3);
  check_merge({7, 1000}, 3, 4);
  check_merge({1000, 7, 1000}, 0, 5);
}

TEST(GpuHeadSlice, merge_equals_host_wide_slices) {
  GPU_TEST_REQUIRE_DEVICE();
  check_merge({100544, 100544}, 0, 6);  // 20b's vocabulary on two ranks
  check_merge({1000, 100544, 7}, 64, 7);
  check_merge({100544, 1}, 0, 8);
}

// Rows already flagged non-finite keep merging later finite slices (the host does), and a row's
// k outside 1..kHeadSplitMaxK is left alone.
TEST(GpuHeadSlice, merge_edge_rows) {
  GPU_TEST_REQUIRE_DEVICE();
  const int w = 300;
  Rng r(9);
  std::vector<float> a(w), b(w);
  for (auto& x : a) x = r.normal();
  for (auto& x : b) x = r.normal();
  a[17] = INFINITY;
  std::vector<HeadRow> host = {head_row_init(5), head_row_init(1)};
  HeadRow bad = head_row_init(5);
  bad.k = 65;
  host.push_back(bad);
  std::vector<HeadRow> init = host;
  std::vector<int32_t> scratch;
  for (int i = 0; i < 2; ++i) {
    head_row_merge(host[size_t(i)], a.data(), 0, w, scratch);
    head_row_merge(host[size_t(i)], b.data(), w, w, scratch);
  }
  DevBuf<HeadRow> d_rows(init);
  std::vector<float> ba, bb;
  for (int i = 0; i < 3; ++i) ba.insert(ba.end(), a.begin(), a.end()), bb.insert(bb.end(), b.begin(), b.end());
  DevBuf<float> da(ba), db(bb);
  gpu::f32_head_rows_merge(da.p, 3, w, 0, d_rows.p, nullptr);
  gpu::f32_head_rows_merge(db.p, 3, w, w, d_rows.p, nullptr);
  const std::vector<HeadRow> got = d_rows.download();
  EXPECT_EQ(host[0].flags, static_cast<uint32_t>(kHeadRowNonFinite));
  EXPECT_EQ(host[0].count, 5);
  expect_rows_equal(got.data(), host.data(), 3, "edge rows");
}

TEST(GpuHeadSlice, init_equals_host) {
  GPU_TEST_REQUIRE_DEVICE();
  const int H = 96, rows = 10, n = 7;
  Rng r(10);
  const std::vector<float> x = r.normals(size_t(rows) * H);
  const std::vector<int32_t> x_rows = {9, 0, 4, 4, 2, 7, 1}, k = {1, 64, 2, 5, 1, 17, 64};
  DevBuf<float> dx(x), dxo(size_t(n) * H);
  DevBuf<int32_t> d_xr(x_rows), d_k(k);
  DevBuf<HeadRow> d_rows(n);  // poisoned: every byte must be written
  gpu::head_rows_init(dx.p, d_xr.p, d_k.p, n, H, d_rows.p, dxo.p, nullptr);
  const std::vector<HeadRow> got = d_rows.download();
  const std::vector<float> xo = dxo.download();
  std::vector<HeadRow> want;
  for (int i = 0; i < n; ++i) want.push_back(head_row_init(k[size_t(i)]));
  expect_rows_equal(got.data(), want.data(), size_t(n), "init");
  for (int i = 0; i < n; ++i)
    EXPECT_EQ(std::memcmp(xo.data() + size_t(i) * H, x.data() + size_t(x_rows[size_t(i)]) * H,
                          H * sizeof(float)), 0) << "row " << i;
}

// Event-timed merges of 256 rows of a 100544-id slice (information, not a gate).
TEST(GpuHeadSlice, merge_timing) {
  GPU_TEST_REQUIRE_DEVICE();
  const int n = 256, w = 100544;
  Rng r(11);
  DevBuf<float> d_logits(r.normals(size_t(n) * w, 3.0f));
  for (int k : {1, 64}) {
    DevBuf<HeadRow> d_rows(std::vector<HeadRow>(size_t(n), head_row_init(k)));
    gpuEvent_t a, b;
    GPU_CHECK(gpuEventCreate(&a));
    GPU_CHECK(gpuEventCreate(&b));
    gpu::f32_head_rows_merge(d_logits.p, n, w, 0, d_rows.p, nullptr);  // warm-up
    GPU_CHECK(gpuEventRecord(a, nullptr));
    const int reps = 10;
    for (int i = 0; i < reps; ++i) gpu::f32_head_rows_merge(d_logits.p, n, w, 0, d_rows.p, nullptr);
    GPU_CHECK(gpuEventRecord(b, nullptr));
    GPU_CHECK(gpuEventSynchronize(b));
    float ms = 0;
    GPU_CHECK(gpuEventElapsedTime(&ms, a, b));
    const double us = 1e3 * ms / reps, gbs = double(n) * w * 4 / (us * 1e-6) / 1e9;
    std::printf("[ timing ] f32_head_rows_merge k %d: %d rows x %d ids: %.1f us (%.0f GB/s of logits)\n",
                k, n, w, us, gbs);
    GPU_CHECK(gpuEventDestroy(a));
    GPU_CHECK(gpuEventDestroy(b));
  }
}

// ---------------------------------------------------------------------------- the backend
// The random tiny model (tiny_model.h), written once per process, removed at exit.
const ModelFile& tiny_model() {
  static const std::string path = [] {
    std::string p = gputest::write_tiny_model("gpu_head_slice_test", 21);
    std::atexit([] { std::remove(path.c_str()); });
    return p;
  }();
  static const ModelFile m(path);
  return m;
}

BackendOptions exact_f32kv() {
  BackendOptions o;
  o.ctx = 64;
  o.max_slots = 2;
  o.kv_cache = "f32";
  o.precision = "exact";
  return o;
}

// 12 prompt rows of two sequences (7 and 5 positions), through the layers of `b` (the ends).
struct Prompt {
  std::vector<int32_t> tokens;
  std::vector<RowPos> rows;
};
Prompt prompt() {
  Prompt p;
  std::mt19937 rng(5);
  for (int s = 0; s < 2; ++s)
    for (int pos = 0; pos < (s == 0 ? 7 : 5); ++pos) {
      p.tokens.push_back(int32_t(rng() % 2000));
      p.rows.push_back(RowPos{s, pos, -1});
    }
  return p;
}

// The host's HeadRows for logits [n, V] (whole rows) cut at `bounds` (ascending, 0 .. V).
std::vector<HeadRow> host_rows(const std::vector<float>& logits, int V, const std::vector<int32_t>& k,
                               const std::vector<int>& bounds) {
  std::vector<HeadRow> rows;
  std::vector<int32_t> scratch;
  for (size_t i = 0; i < k.size(); ++i) {
    HeadRow h = head_row_init(k[i]);
    for (size_t s = 0; s + 1 < bounds.size(); ++s)
      head_row_merge(h, logits.data() + i * V + bounds[s], bounds[s], bounds[s + 1] - bounds[s],
                     scratch);
    rows.push_back(h);
  }
  return rows;
}

TEST(GpuHeadSlice, backend_slices_equal_its_whole_head) {
  GPU_TEST_REQUIRE_DEVICE();
  const ModelFile& m = tiny_model();
  const Config& c = m.config();
  const int V = c.vocab, H = c.hidden;
  auto gpu = make_gpu_backend(m, exact_f32kv(), 0, c.n_layers, true);
  auto cpu = make_cpu_backend(m, exact_f32kv(), 0, c.n_layers, true);
  ASSERT_TRUE(gpu->can_head_slice());
  const Prompt p = prompt();
  const size_t R = p.rows.size();
  DevBuf<float> d_x(R * H);
  gpu->run(p.tokens, p.rows, nullptr, d_x.p);
  std::vector<float> cpu_x(R * H);
  cpu->run(p.tokens, p.rows, nullptr, cpu_x.data());
  const std::vector<int32_t> ks = {1, 2, 5, 64, 1, 64, 5, 1, 2, 64, 1, 5};
  // Row counts on each kernel path of the head: the decode kernel (1, 3), the GEMV (6), the GEMM
  // (12); each with 2 and 3 slices, one starting empty (a rank 0 whose slice is empty).
  const std::vector<std::vector<int32_t>> row_sets = {
      {3}, {0, 5, 7}, {1, 2, 3, 4, 6, 8}, {11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0}};
  const std::vector<std::vector<int>> cuts = {{0, 777, V}, {0, 64, 1300, V}, {0, 0, V}};
  for (const auto& xr : row_sets) {
    const size_t n = xr.size();
    const std::vector<int32_t> k(ks.begin(), ks.begin() + long(n));
    std::vector<float> whole(n * V), cpu_logits(n * V);
    gpu->head(d_x.p, xr, whole.data());
    cpu->head(cpu_x.data(), xr, cpu_logits.data());
    for (const auto& cut : cuts) {
      const std::string what = strfmt("%zu rows, %zu slices from %d", n, cut.size() - 1, cut[1]);
      DevBuf<uint8_t> a(head_payload_bytes(n, H)), b(head_payload_bytes(n, H));
      void* last = a.p;
      gpu->head_slice_first(d_x.p, xr, k, cut[0], cut[1], last);
      for (size_t s = 1; s + 1 < cut.size(); ++s) {
        void* out = s == 1 ? b.p : last;  // out of place (another rank's link), then in place
        gpu->head_slice_next(last, out, int(n), cut[s], cut[s + 1]);
        last = out;
      }
      gpu->head_slice_next(last, last, int(n), V, V);  // an empty slice changes nothing
      std::vector<HeadRow> got(n);
      gpu->head_rows_read(last, int(n), got.data());
      const std::vector<HeadRow> want = host_rows(whole, V, k, cut);
      expect_rows_equal(got.data(), want.data(), n, what);
      // The payload's hidden states: the gathered rows, unchanged by the laps.
      std::vector<float> xo(n * H), xs = d_x.download();
      GPU_CHECK(gpuMemcpy(xo.data(), static_cast<uint8_t*>(last) + n * sizeof(HeadRow),
                          xo.size() * sizeof(float), gpuMemcpyDeviceToHost));
      for (size_t i = 0; i < n; ++i)
        EXPECT_EQ(std::memcmp(xo.data() + i * H, xs.data() + size_t(xr[i]) * H, H * sizeof(float)), 0)
            << what << ": x of row " << i;
      // Sanity against the CPU backend: every candidate's logit, and greedy rows' choice.
      for (size_t i = 0; i < n; ++i) {
        const float* lc = cpu_logits.data() + i * V;
        float amax = 0;
        for (int j = 0; j < V; ++j) amax = std::max(amax, std::fabs(lc[j]));
        const float tol = 1e-3f * amax;
        for (int q = 0; q < got[i].count; ++q)
          EXPECT_NEAR(got[i].cand[q].value, lc[got[i].cand[q].id], tol) << what << ", row " << i;
        if (k[i] == 1) {
          EXPECT_GE(lc[got[i].cand[0].id], *std::max_element(lc, lc + V) - 2 * tol)
              << what << ", row " << i << ": the GPU's arg-max is not the CPU's within rounding";
        }
        EXPECT_EQ(got[i].count, k[i]) << what << ", row " << i;
      }
    }
  }
}

// A later rank's backend (no embedding, no head of its own) uploads the final norm and its rows
// of the LM head on first use; its merge continues rank 0's payload exactly.
TEST(GpuHeadSlice, backend_without_ends_uploads_its_slice) {
  GPU_TEST_REQUIRE_DEVICE();
  const ModelFile& m = tiny_model();
  const Config& c = m.config();
  const int V = c.vocab, H = c.hidden, b0 = 1216;
  auto first = make_gpu_backend(m, exact_f32kv(), 0, c.n_layers, true);
  auto later = make_gpu_backend(m, exact_f32kv(), c.n_layers - 1, c.n_layers, false);
  ASSERT_TRUE(later->can_head_slice());
  const Prompt p = prompt();
  const size_t R = p.rows.size();
  DevBuf<float> d_x(R * H);
  first->run(p.tokens, p.rows, nullptr, d_x.p);
  for (const std::vector<int32_t>& xr : {std::vector<int32_t>{6, 2}, std::vector<int32_t>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}}) {
    const size_t n = xr.size();
    std::vector<int32_t> k;
    for (size_t i = 0; i < n; ++i) k.push_back(i % 2 ? 64 : 1);
    std::vector<float> whole(n * V);
    first->head(d_x.p, xr, whole.data());
    DevBuf<uint8_t> a(head_payload_bytes(n, H)), b(head_payload_bytes(n, H));
    first->head_slice_first(d_x.p, xr, k, 0, b0, a.p);
    GPU_CHECK(gpuStreamSynchronize(static_cast<gpuStream_t>(first->stream())));
    later->head_slice_next(a.p, b.p, int(n), b0, V);
    std::vector<HeadRow> got(n);
    later->head_rows_read(b.p, int(n), got.data());
    const std::vector<HeadRow> want = host_rows(whole, V, k, {0, b0, V});
    expect_rows_equal(got.data(), want.data(), n, strfmt("%zu rows, slice [%d, %d) on a later rank", n, b0, V));
  }
}

}  // namespace
}  // namespace gptoss
