// sampler_test.cpp: greedy ties, top-k = 1 equals greedy, seed reproducibility, top-p keeps the
// minimal set, temperature sampling follows the distribution, bad parameters are rejected.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <set>
#include <vector>

#include "common/error.h"
#include "backend/sampler.h"

namespace gptoss {
namespace {

TEST(Sampler, GreedyLowestIdWinsTies) {
  Sampler s(SamplerParams{});
  const float l[5] = {1, 5, 2, 5, 5};
  EXPECT_EQ(s.sample(l, 5), 1);
  const float m[3] = {-3, -3, -4};
  EXPECT_EQ(s.sample(m, 3), 0);
}

TEST(Sampler, TopK1EqualsGreedy) {
  std::mt19937 rng(3);
  std::normal_distribution<float> nd;
  for (uint64_t seed = 0; seed < 20; ++seed) {
    std::vector<float> l(1000);
    for (auto& v : l) v = nd(rng);
    Sampler greedy(SamplerParams{});
    Sampler k1(SamplerParams{1.0f, 1, 1.0f, seed});
    Sampler k1p(SamplerParams{2.0f, 1, 0.5f, seed});
    EXPECT_EQ(k1.sample(l.data(), 1000), greedy.sample(l.data(), 1000));
    EXPECT_EQ(k1p.sample(l.data(), 1000), greedy.sample(l.data(), 1000));
  }
}

TEST(Sampler, SeedReproducible) {
  std::vector<float> l(50);
  for (int i = 0; i < 50; ++i) l[i] = std::sin(i * 0.7f);  // a spread-out distribution
  for (auto params : {SamplerParams{1.0f, 0, 1.0f, 42}, SamplerParams{0.8f, 10, 1.0f, 42},
                      SamplerParams{1.2f, 0, 0.9f, 42}, SamplerParams{1.0f, 20, 0.7f, 42}}) {
    Sampler a(params), b(params);
    params.seed = 43;
    Sampler c(params);
    std::vector<int> ta, tb, tc;
    for (int i = 0; i < 200; ++i) {
      ta.push_back(a.sample(l.data(), 50));
      tb.push_back(b.sample(l.data(), 50));
      tc.push_back(c.sample(l.data(), 50));
    }
    EXPECT_EQ(ta, tb);
    EXPECT_NE(ta, tc);  // another seed gives another stream
  }
}

TEST(Sampler, TopPKeepsMinimalSet) {
  // Probabilities 0.5, 0.3, 0.15, 0.05 (ids shuffled: 3, 0, 2, 1).
  const float l[4] = {std::log(0.3f), std::log(0.05f), std::log(0.15f), std::log(0.5f)};
  auto seen = [&](float top_p) {
    Sampler s(SamplerParams{1.0f, 0, top_p, 9});
    std::set<int> ids;
    for (int i = 0; i < 3000; ++i) ids.insert(s.sample(l, 4));
    return ids;
  };
  EXPECT_EQ(seen(0.45f), (std::set<int>{3}));         // 0.5 >= 0.45
  EXPECT_EQ(seen(0.75f), (std::set<int>{0, 3}));      // 0.5 < 0.75 <= 0.8
  EXPECT_EQ(seen(0.9f), (std::set<int>{0, 2, 3}));    // 0.8 < 0.9 <= 0.95
  EXPECT_EQ(seen(1.0f), (std::set<int>{0, 1, 2, 3}));
}

TEST(Sampler, TemperatureAndTopKFollowDistribution) {
  // p = [0.7, 0.2, 0.1] at T = 1; at T = 0.5 p ~ [0.49, 0.04, 0.01] / 0.54; top-k 2 drops id 2.
  const float l[3] = {std::log(0.7f), std::log(0.2f), std::log(0.1f)};
  const int n = 20000;
  int c[3] = {};
  Sampler s(SamplerParams{1.0f, 0, 1.0f, 1});
  for (int i = 0; i < n; ++i) c[s.sample(l, 3)]++;
  EXPECT_NEAR(c[0] / double(n), 0.7, 0.02);
  EXPECT_NEAR(c[1] / double(n), 0.2, 0.02);
  EXPECT_NEAR(c[2] / double(n), 0.1, 0.02);
  int d[3] = {};
  Sampler t(SamplerParams{0.5f, 0, 1.0f, 1});
  for (int i = 0; i < n; ++i) d[t.sample(l, 3)]++;
  EXPECT_NEAR(d[0] / double(n), 0.49 / 0.54, 0.02);
  int e[3] = {};
  Sampler k(SamplerParams{1.0f, 2, 1.0f, 1});
  for (int i = 0; i < n; ++i) e[k.sample(l, 3)]++;
  EXPECT_EQ(e[2], 0);
  EXPECT_NEAR(e[0] / double(n), 0.7 / 0.9, 0.02);
}

TEST(Sampler, RejectsBadParameters) {
  EXPECT_THROW(Sampler(SamplerParams{-1.0f, 0, 1.0f, 0}), Error);
  EXPECT_THROW(Sampler(SamplerParams{1.0f, -2, 1.0f, 0}), Error);
  EXPECT_THROW(Sampler(SamplerParams{1.0f, 0, 0.0f, 0}), Error);
  EXPECT_THROW(Sampler(SamplerParams{1.0f, 0, 1.5f, 0}), Error);
}


// next_pick() + pick() is sample(): the same stream advance and the same choice, so an engine that
// picks on its device from TokenPicks stays in step with host sampling.
TEST(Sampler, NextPickThenPickIsSample) {
  std::mt19937 rng(11);
  std::normal_distribution<float> nd;
  std::vector<float> l(3000);
  for (auto params : {SamplerParams{0.0f, 0, 1.0f, 9}, SamplerParams{1.0f, 0, 1.0f, 9},
                      SamplerParams{0.7f, 40, 1.0f, 9}, SamplerParams{1.3f, 0, 0.9f, 9},
                      SamplerParams{1.0f, 1, 0.5f, 9}, SamplerParams{0.9f, 100, 0.95f, 9}}) {
    Sampler a(params), b(params);
    for (int i = 0; i < 100; ++i) {
      for (auto& v : l) v = 2.0f * nd(rng);
      const TokenPick p = b.next_pick();
      EXPECT_EQ(p.temperature, params.temperature);
      EXPECT_EQ(p.top_k, params.top_k);
      EXPECT_EQ(p.top_p, params.top_p);
      if (params.temperature == 0.0f || params.top_k == 1) EXPECT_EQ(p.u, 0.0);
      else EXPECT_TRUE(p.u >= 0.0 && p.u < 1.0);
      ASSERT_EQ(a.sample(l.data(), 3000), Sampler::pick(l.data(), 3000, p)) << i;
    }
  }
}

}  // namespace
}  // namespace gptoss
