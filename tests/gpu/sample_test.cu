// sample_test.cu: gpu::pick_tokens (kernels/gpu/sample.h) against Sampler::pick on the host.
// Oracle: Sampler::pick (src/engine/sampler.cpp) for every row; where sample.h's rule says the
// device must give -1 (non-finite logits, bad temperature, answer beyond the kPickMaxTopK largest
// candidates), the expected -1 is derived from an independent re-statement of the CPU steps
// (ref_pick below, itself checked against Sampler::pick on every row). Rounding-margin -1s
// (rule 3) have probability ~1e-10 per random row, so random rows must match exactly; the rule
// itself is tested on constructed exact ties (MarginRule). Timings are printed (event-timed).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <numeric>
#include <vector>

#include "backend/sampler.h"
#include "gpu/sample.h"
#include "gpu_test_util.h"

namespace gptoss {
namespace {
using gputest::DevBuf;
using gputest::Rng;

constexpr int kBig = 201088;
constexpr int kCap = gpu::kPickMaxTopK;

TokenPick mk(float T, int top_k, float top_p, double u) {
  TokenPick p;
  p.temperature = T;
  p.top_k = top_k;
  p.top_p = top_p;
  p.u = u;
  return p;
}

double draw(Rng& r) { return static_cast<double>(r.g() >> 11) * 0x1.0p-53; }

// The CPU's steps, restated, with where the pick lies: pos = its index in candidate order,
// keep = kept count (top-p), K = candidate count.
struct Ref {
  int32_t token = 0;
  int pos = 0, keep = 0, K = 0;
  bool sorted = false;
};
Ref ref_pick(const float* l, int n, const TokenPick& p) {
  Ref r;
  const bool topk_on = p.top_k > 0 && p.top_k < n;
  r.sorted = topk_on || p.top_p < 1.0f;
  r.K = topk_on ? p.top_k : n;
  std::vector<int32_t> c(n);
  std::iota(c.begin(), c.end(), 0);
  if (r.sorted)
    std::stable_sort(c.begin(), c.end(), [&](int32_t a, int32_t b) { return l[a] > l[b]; });
  c.resize(r.K);
  float mx = l[c[0]];
  for (int32_t id : c) mx = std::max(mx, l[id]);
  std::vector<double> pr(r.K);
  double total = 0;
  for (int i = 0; i < r.K; ++i) total += pr[i] = std::exp((double(l[c[i]]) - mx) / p.temperature);
  r.keep = r.K;
  if (p.top_p < 1.0f) {
    const double need = p.top_p * total;
    double acc = 0;
    for (int i = 0; i < r.K; ++i) {
      acc += pr[i];
      if (acc >= need) {
        r.keep = i + 1;
        total = acc;
        break;
      }
    }
  }
  const double t = p.u * total;
  double acc = 0;
  r.pos = r.keep - 1;
  for (int i = 0; i < r.keep; ++i) {
    acc += pr[i];
    if (acc > t) {
      r.pos = i;
      break;
    }
  }
  r.token = c[r.pos];
  return r;
}

// Rows of case (d) (sorted candidates, K > kPickMaxTopK): decided on the device / beyond (-1).
struct Counts {
  int decided_d = 0, beyond = 0;
};

// What the device must return for a row of finite logits with temperature >= 0 (sample.h).
int32_t expected(const float* l, int n, const TokenPick& p, Counts* counts = nullptr) {
  const int32_t cpu = Sampler::pick(l, n, p);
  if (p.temperature == 0.0f || p.top_k == 1) return cpu;
  const Ref r = ref_pick(l, n, p);
  EXPECT_EQ(r.token, cpu) << "ref_pick disagrees with Sampler::pick";
  if (r.sorted && r.K > kCap) {
    const bool out = p.top_p < 1.0f ? r.keep > kCap : r.pos >= kCap;
    if (counts) ++(out ? counts->beyond : counts->decided_d);
    if (out) return -1;
  }
  return cpu;
}

struct Timed {
  std::vector<int32_t> tokens;
  double us = 0;  // median over reps (0 when reps == 0)
};

Timed run_gpu(const std::vector<float>& logits, int vocab, const std::vector<TokenPick>& picks,
              int reps = 0) {
  const int rows = static_cast<int>(picks.size());
  EXPECT_EQ(logits.size(), size_t(rows) * vocab);
  gpu::PickScratch s = gpu::pick_scratch_create(rows, vocab);
  DevBuf<float> dl(logits);
  DevBuf<TokenPick> dp(picks);
  DevBuf<int32_t> dt(rows);  // poisoned: 0xffffffff = -1, so also check a second run below
  gpu::pick_tokens(dl.p, rows, vocab, dp.p, dt.p, s, nullptr);
  Timed out;
  out.tokens = dt.download();
  GPU_CHECK(gpuMemset(dt.p, 0x7f, rows * 4));  // another poison: an unwritten row shows here
  gpu::pick_tokens(dl.p, rows, vocab, dp.p, dt.p, s, nullptr);
  EXPECT_EQ(out.tokens, dt.download()) << "a row was not written (or the result is not stable)";
  if (reps > 0) {
    gpuEvent_t a, b;
    GPU_CHECK(gpuEventCreate(&a));
    GPU_CHECK(gpuEventCreate(&b));
    std::vector<float> ms;
    for (int i = 0; i < reps; ++i) {
      GPU_CHECK(gpuEventRecord(a, nullptr));
      gpu::pick_tokens(dl.p, rows, vocab, dp.p, dt.p, s, nullptr);
      GPU_CHECK(gpuEventRecord(b, nullptr));
      GPU_CHECK(gpuEventSynchronize(b));
      float t = 0;
      GPU_CHECK(gpuEventElapsedTime(&t, a, b));
      ms.push_back(t);
    }
    std::sort(ms.begin(), ms.end());
    out.us = 1000.0 * ms[ms.size() / 2];
    GPU_CHECK(gpuEventDestroy(a));
    GPU_CHECK(gpuEventDestroy(b));
  }
  gpu::pick_scratch_destroy(s);
  return out;
}

enum class Gen { kWide, kPeaky, kTies, kFlat };
// kWide: N(0, 3) (a flat-ish softmax: the 0.9 nucleus holds ~4% of the vocab); kPeaky: N(0, 1)
// plus 24 ids at 12..22 (the mass sits in a few ids, like a real model's logits); kTies: N(0, 2)
// rounded to multiples of 1/16 (many exact ties); kFlat: all 0.5.
std::vector<float> gen_row(Rng& r, int n, Gen g) {
  std::vector<float> v(n, 0.5f);
  if (g == Gen::kFlat) return v;
  for (auto& x : v) x = r.normal(g == Gen::kWide ? 3.0f : g == Gen::kPeaky ? 1.0f : 2.0f);
  if (g == Gen::kTies)
    for (auto& x : v) x = std::round(x * 16.0f) / 16.0f;
  if (g == Gen::kPeaky)
    for (int k = 0; k < 24; ++k) v[r.uniform_int(0, n - 1)] = 12.0f + 10.0f * float(k % 7) / 7.0f;
  return v;
}

// Builds rows (generator per row), runs them and compares every row with expected().
struct Case {
  Gen gen;
  TokenPick pick;
};
void check_rows(int vocab, const std::vector<Case>& cases, uint64_t seed, const char* what,
                Counts* counts = nullptr) {
  Rng r(seed);
  std::vector<float> logits;
  std::vector<TokenPick> picks;
  for (const Case& c : cases) {
    auto row = gen_row(r, vocab, c.gen);
    logits.insert(logits.end(), row.begin(), row.end());
    picks.push_back(c.pick);
  }
  const auto got = run_gpu(logits, vocab, picks).tokens;
  for (size_t i = 0; i < cases.size(); ++i) {
    const TokenPick& p = picks[i];
    const int32_t want = expected(logits.data() + i * vocab, vocab, p, counts);
    EXPECT_EQ(want, got[i]) << what << ": vocab " << vocab << " row " << i << " T "
                            << p.temperature << " top_k " << p.top_k << " top_p " << p.top_p
                            << " u " << p.u;
  }
}

TEST(GpuSample, greedy_ties_nan_zeros) {
  GPU_TEST_REQUIRE_DEVICE();
  Rng r(1);
  const int n = kBig, rows = 9;
  auto x = r.normals(size_t(rows) * n, 2.0f);
  float* row[rows];
  for (int k = 0; k < rows; ++k) row[k] = x.data() + size_t(k) * n;
  row[1][777] = 50.0f, row[1][90000] = 50.0f;   // tie: lower id
  row[2][5] = NAN, row[2][200000] = 60.0f;       // NaN never wins
  std::fill(row[3], row[3] + n, 1.0f);           // all equal -> 0
  std::fill(row[4], row[4] + n, NAN);            // all NaN -> 0
  std::fill(row[5], row[5] + n, -1.0f);          // -0 and +0 tie: the first
  row[5][70] = -0.0f, row[5][9] = 0.0f;
  row[6][0] = NAN, row[6][n - 1] = 70.0f;        // NaN first, max last
  row[7][123] = INFINITY;                        // +inf wins
  row[8][4] = 30.0f;                             // top_k 1 at T > 0
  std::vector<TokenPick> picks(rows, mk(0.0f, 0, 1.0f, 0.0));
  picks[1] = mk(-0.0f, 40, 0.5f, 0.7);  // T = -0 is greedy whatever the rest says
  picks[8] = mk(1.5f, 1, 0.9f, 0.3);
  const auto got = run_gpu(x, n, picks).tokens;
  for (int k = 0; k < rows; ++k) EXPECT_EQ(Sampler::pick(row[k], n, picks[k]), got[k]) << k;
  const std::vector<int32_t> want = {got[0], 777, 200000, 0, 0, 9, n - 1, 123, 4};
  EXPECT_EQ(want, got);
}

TEST(GpuSample, top_k_equals_cpu) {
  GPU_TEST_REQUIRE_DEVICE();
  for (int vocab : {1000, kBig}) {
    Rng r(2);
    std::vector<Case> cases;
    for (int k : {2, 40, kCap})
      for (float T : {0.5f, 1.0f, 2.0f})
        for (Gen g : {Gen::kWide, Gen::kPeaky, Gen::kTies})
          cases.push_back({g, mk(T, k, 1.0f, draw(r))});
    cases.push_back({Gen::kFlat, mk(1.0f, 40, 1.0f, 0.4123)});  // ties only: ids 0..39
    cases.push_back({Gen::kWide, mk(1.0f, 40, 1.0f, 0.0)});
    cases.push_back({Gen::kWide, mk(1.0f, 40, 1.0f, 1.0 - 0x1p-53)});
    check_rows(vocab, cases, 20 + vocab, "top_k");
  }
}

TEST(GpuSample, temperature_id_order_equals_cpu) {
  GPU_TEST_REQUIRE_DEVICE();
  for (int vocab : {1000, kBig}) {
    Rng r(3);
    std::vector<Case> cases;
    for (int rep = 0; rep < 4; ++rep)
      for (float T : {0.5f, 1.0f, 2.0f})
        for (Gen g : {Gen::kWide, Gen::kPeaky, Gen::kTies})
          cases.push_back({g, mk(T, 0, 1.0f, draw(r))});
    cases.push_back({Gen::kWide, mk(1.0f, vocab, 1.0f, draw(r))});      // top_k = vocab: off
    cases.push_back({Gen::kPeaky, mk(1.0f, vocab + 7, 1.0f, draw(r))});  // > vocab: off
    cases.push_back({Gen::kFlat, mk(0.7f, 0, 1.0f, 1.0 - 0x1p-53)});  // the last id
    cases.push_back({Gen::kFlat, mk(1.0f, 0, 1.0f, 0.123456)});  // 0.123456 * vocab: no tie
    check_rows(vocab, cases, 30 + vocab, "temperature");
  }
}

TEST(GpuSample, top_p_equals_cpu_or_documented_minus_one) {
  GPU_TEST_REQUIRE_DEVICE();
  Counts counts;
  for (int vocab : {1000, kBig}) {
    Rng r(4);
    std::vector<Case> cases;
    for (float top_p : {0.5f, 0.9f, 0.99f})
      for (int k : {0, 40, kCap, 5000})
        for (Gen g : {Gen::kWide, Gen::kPeaky, Gen::kTies})
          cases.push_back({g, mk(g == Gen::kPeaky ? 1.0f : 0.8f, k, top_p, draw(r))});
    for (int rep = 0; rep < 6; ++rep)  // top_k > cap without top_p: the draw decides
      cases.push_back({rep % 2 ? Gen::kPeaky : Gen::kWide, mk(1.0f, 3000, 1.0f, draw(r))});
    check_rows(vocab, cases, 40 + vocab, "top_p", &counts);
  }
  // Both outcomes of case (d) were exercised: decided on the device, and beyond the cap.
  EXPECT_GT(counts.beyond, 0);
  EXPECT_GT(counts.decided_d, 0);
  std::printf("top_p: (d) rows decided on the device %d, beyond the top %d (-1) %d\n",
              counts.decided_d, kCap, counts.beyond);
}

TEST(GpuSample, flat_distribution_minus_one) {
  GPU_TEST_REQUIRE_DEVICE();
  const int n = kBig;
  std::vector<TokenPick> picks = {
      mk(1.0f, 0, 0.9f, 0.5),        // nucleus 180980 ids > cap: -1
      mk(1.0f, 0, 0.001f, 0.5001),   // need = 201.088: nucleus 202 ids, t = 101.02: id 101
      mk(1.0f, 5000, 1.0f, 0.9001),  // draw at candidate 4500 of 5000 > cap: -1
      mk(1.0f, 5000, 1.0f, 0.1001),  // draw at candidate 500: decided
      mk(2.0f, 40, 0.55f, 0.3001),   // top 40, need 22.0000005: keep 23, t = 6.90: id 6
  };
  std::vector<float> x(size_t(picks.size()) * n, -3.25f);
  const auto got = run_gpu(x, n, picks).tokens;
  const std::vector<int32_t> want = {-1, 101, -1, 500, 6};
  EXPECT_EQ(want, got);
  for (size_t k = 0; k < picks.size(); ++k) {
    if (want[k] >= 0) {
      EXPECT_EQ(Sampler::pick(x.data() + k * n, n, picks[k]), want[k]) << k;
    }
  }
}

// sample.h's -1 rule 1 and 3 on constructed rows: exact ties between u * mass and a running sum,
// and just off them.
TEST(GpuSample, margin_rule) {
  GPU_TEST_REQUIRE_DEVICE();
  const int n = 1000;
  std::vector<float> flat(n, 1.0f), two(n, -40.0f), four(n, -60.0f);
  two[10] = two[20] = 3.0f;
  for (int id : {3, 5, 7, 9}) four[id] = 2.0f;
  struct R {
    const std::vector<float>* row;
    TokenPick p;
    int32_t want;  // -1 or the CPU's token (checked below)
  };
  std::vector<R> rs = {
      // (c) id order, 1000 equal logits: running sums 1, 2, ..., t = 1000 u.
      {&flat, mk(1.0f, 0, 1.0f, 0.5), -1},           // t = 500 = P(499): tie
      {&flat, mk(1.0f, 0, 1.0f, 0.5 + 1e-6), 500},   // t = 500.001
      {&flat, mk(1.0f, 0, 1.0f, 0.5 - 1e-6), 499},   // t = 499.999
      {&flat, mk(1.0f, 0, 1.0f, 0.25), -1},          // t = 250 = P(249)
      {&flat, mk(1.0f, 0, 1.0f, 0.0), 0},            // t = 0 < P(0) = 1
      // (b) top 2 of equal logits (ids 10, 20), masses 1 and 2: t = 2 u.
      {&two, mk(1.0f, 2, 1.0f, 0.5), -1},
      {&two, mk(1.0f, 2, 1.0f, 0.25), 10},
      {&two, mk(1.0f, 2, 1.0f, 0.75), 20},
      {&two, mk(1.0f, 2, 1.0f, 0.5 + 1e-9), 20},
      // (b) top 4 of equal logits, top_p: need = 4 top_p against sums 1, 2, 3, 4.
      {&four, mk(1.0f, 4, 0.5f, 0.9), -1},   // need 2 = P(1): kept count on a tie
      {&four, mk(1.0f, 4, 0.75f, 0.1), -1},  // need 3 = P(2)
      {&four, mk(1.0f, 4, 0.6f, 0.9), 7},    // need 2.4: keep 3, t = 2.7 -> third (id 7)
      {&four, mk(1.0f, 4, 0.6f, 1.0 / 3.0), -1},  // keep 3, t = u * 3 = 1 = P(0)
  };
  // rule 1: non-finite logits (NaN, +inf, -inf, -inf) or temperature, in sampling rows only.
  std::vector<std::vector<float>> bads;
  for (int k = 0; k < 4; ++k) {
    bads.push_back(std::vector<float>(n, 0.5f));
    bads.back()[100 + k] = k == 0 ? NAN : k == 1 ? INFINITY : -INFINITY;
  }
  for (auto& b : bads) {
    rs.push_back({&b, mk(1.0f, 0, 1.0f, 0.5), -1});
    rs.push_back({&b, mk(1.0f, 40, 1.0f, 0.5), -1});
    rs.push_back({&b, mk(1.0f, 0, 0.9f, 0.5), -1});
  }
  rs.push_back({&bads[0], mk(0.0f, 0, 1.0f, 0.5), 0});  // greedy rows never give -1
  rs.push_back({&bads[1], mk(0.0f, 0, 1.0f, 0.5), 101});
  rs.push_back({&bads[2], mk(1.0f, 1, 1.0f, 0.5), 0});
  rs.push_back({&flat, mk(-1.0f, 0, 1.0f, 0.5), -1});
  rs.push_back({&flat, mk(NAN, 0, 1.0f, 0.5), -1});
  std::vector<float> x;
  std::vector<TokenPick> picks;
  for (auto& q : rs) {
    x.insert(x.end(), q.row->begin(), q.row->end());
    picks.push_back(q.p);
  }
  const auto got = run_gpu(x, n, picks).tokens;
  for (size_t k = 0; k < rs.size(); ++k) {
    const int32_t want = rs[k].want;
    if (want >= 0 && picks[k].temperature == picks[k].temperature && picks[k].temperature >= 0) {
      EXPECT_EQ(Sampler::pick(rs[k].row->data(), n, picks[k]), want) << "test table row " << k;
    }
    EXPECT_EQ(want, got[k]) << "row " << k << " top_k " << picks[k].top_k << " top_p "
                            << picks[k].top_p << " u " << picks[k].u;
  }
}

// Mixed batches of 1..256 rows (greedy and every sampling mode in one launch), the same results
// from a captured graph, and the timings.
TEST(GpuSample, batches_graph_and_timing) {
  GPU_TEST_REQUIRE_DEVICE();
  const int n = kBig;
  for (int rows : {1, 3, 17, 256}) {
    Rng r(50 + rows);
    std::vector<Case> cases;
    for (int i = 0; i < rows; ++i) {
      const int kind = (i * 7 + rows) % 5;
      const double u = draw(r);
      const TokenPick p = kind == 0   ? mk(0.0f, 0, 1.0f, 0.0)
                          : kind == 1 ? mk(1.0f, 40, 1.0f, u)
                          : kind == 2 ? mk(0.8f, 0, 1.0f, u)
                          : kind == 3 ? mk(1.0f, 0, 0.9f, u)
                                      : mk(1.2f, 100, 0.95f, u);
      cases.push_back({kind == 3 ? Gen::kPeaky : Gen::kWide, p});
    }
    check_rows(n, cases, 60 + rows, "mixed batch");
  }
  // Graph capture: the same tokens as a direct launch.
  {
    Rng r(70);
    const int rows = 8;
    std::vector<float> x;
    std::vector<TokenPick> picks;
    for (int i = 0; i < rows; ++i) {
      auto row = gen_row(r, n, Gen::kPeaky);
      x.insert(x.end(), row.begin(), row.end());
      picks.push_back(i % 2 ? mk(1.0f, 0, 0.9f, draw(r)) : mk(0.0f, 0, 1.0f, 0.0));
    }
    const auto direct = run_gpu(x, n, picks).tokens;
    gpu::PickScratch s = gpu::pick_scratch_create(rows, n);
    DevBuf<float> dl(x);
    DevBuf<TokenPick> dp(picks);
    DevBuf<int32_t> dt(rows);
    gpuStream_t st;
    GPU_CHECK(gpuStreamCreateNonBlocking(&st));
    gpuGraph_t g;
    gpuGraphExec_t ge;
    GPU_CHECK(gpuStreamBeginCapture(st));
    gpu::pick_tokens(dl.p, rows, n, dp.p, dt.p, s, st);
    GPU_CHECK(gpuStreamEndCapture(st, &g));
    GPU_CHECK(gpuGraphInstantiate(&ge, g));
    GPU_CHECK(gpuGraphLaunch(ge, st));
    GPU_CHECK(gpuStreamSynchronize(st));
    EXPECT_EQ(direct, dt.download());
    GPU_CHECK(gpuGraphExecDestroy(ge));
    GPU_CHECK(gpuGraphDestroy(g));
    GPU_CHECK(gpuStreamDestroy(st));
    EXPECT_THROW(gpu::pick_tokens(dl.p, rows + 1, n, dp.p, dt.p, s, nullptr), Error);
    EXPECT_THROW(gpu::pick_tokens(dl.p, rows, n - 1, dp.p, dt.p, s, nullptr), Error);
    gpu::pick_scratch_destroy(s);
  }
  // Timings (no checks beyond the run itself; the tokens are checked above).
  gpuDeviceProp prop;
  int dev = 0;
  GPU_CHECK(gpuGetDevice(&dev));
  GPU_CHECK(gpuGetDeviceProperties(&prop, dev));
  struct T {
    const char* name;
    int rows;
    TokenPick p;
    Gen g;
  };
  const std::vector<T> ts = {
      {"greedy", 1, mk(0.0f, 0, 1.0f, 0.0), Gen::kWide},
      {"greedy", 64, mk(0.0f, 0, 1.0f, 0.0), Gen::kWide},
      {"greedy", 256, mk(0.0f, 0, 1.0f, 0.0), Gen::kWide},
      {"T=1 (id order)", 64, mk(1.0f, 0, 1.0f, 0.5), Gen::kWide},
      {"top_k=40", 64, mk(1.0f, 40, 1.0f, 0.5), Gen::kWide},
      {"top_k=1024", 64, mk(1.0f, 1024, 1.0f, 0.5), Gen::kWide},
      {"top_p=0.9 peaky", 64, mk(1.0f, 0, 0.9f, 0.5), Gen::kPeaky},
      {"top_k=40 top_p=0.9", 64, mk(1.0f, 40, 0.9f, 0.5), Gen::kWide},
      {"top_p=0.9 wide (-1)", 64, mk(1.0f, 0, 0.9f, 0.5), Gen::kWide},
      {"top_k=40 bf16-ish ties", 64, mk(1.0f, 40, 1.0f, 0.5), Gen::kTies},
  };
  for (const T& t : ts) {
    Rng r(80);
    std::vector<float> x;
    for (int i = 0; i < t.rows; ++i) {
      auto row = gen_row(r, n, t.g);
      x.insert(x.end(), row.begin(), row.end());
    }
    const auto res = run_gpu(x, n, std::vector<TokenPick>(t.rows, t.p), 20);
    std::printf("pick_tokens %-24s rows %3d vocab %d: %8.1f us (%s, median of 20)\n", t.name,
                t.rows, n, res.us, prop.name);
  }
}

}  // namespace
}  // namespace gptoss
