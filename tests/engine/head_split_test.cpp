// head_split_test.cpp: the pipeline's vocab-parallel head (backend/head_split.h) against the
// oracle Sampler::pick on the whole row: for random rows (with many tied logits, NaNs for greedy,
// infinities), cut into 1-6 slices of uneven sizes (some empty), the merged candidates choose the
// token pick() chooses from the whole row, for greedy and top-k (2..kHeadSplitMaxK) with and
// without top-p, over many draws; rows the split cannot choose say so (-1 / k = 0).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "backend/head_split.h"
#include "backend/sampler.h"

namespace gptoss {
namespace {

// Slice bounds: `cuts` random cut points in [0, vocab], sorted (equal cuts give empty slices).
std::vector<int> random_bounds(std::mt19937& rng, int vocab, int slices) {
  std::vector<int> b{0, vocab};
  std::uniform_int_distribution<int> cut(0, vocab);
  for (int i = 1; i < slices; ++i) b.push_back(cut(rng));
  std::sort(b.begin(), b.end());
  return b;
}

int32_t split_pick(const std::vector<float>& l, const std::vector<int>& bounds, const TokenPick& p) {
  const int k = head_split_k(p, static_cast<int>(l.size()));
  if (k == 0) return -2;
  HeadRow row = head_row_init(k);
  std::vector<int32_t> scratch;
  for (size_t s = 0; s + 1 < bounds.size(); ++s)
    head_row_merge(row, l.data() + bounds[s], bounds[s], bounds[s + 1] - bounds[s], scratch);
  return head_row_pick(row, p);
}

TEST(HeadSplit, WhichRowsSplit) {
  TokenPick p;
  EXPECT_EQ(head_split_k(p, 100), 1);  // greedy
  p.temperature = 0.7f;
  p.top_k = 1;
  EXPECT_EQ(head_split_k(p, 100), 1);
  p.top_k = 40;
  EXPECT_EQ(head_split_k(p, 100), 40);
  p.top_p = 0.9f;
  EXPECT_EQ(head_split_k(p, 100), 40);  // top-p within the top k: still exact
  p.top_k = 0;
  EXPECT_EQ(head_split_k(p, 100), 0);  // nucleus of the whole row: rank 0 chooses it
  p.top_p = 1.0f;
  EXPECT_EQ(head_split_k(p, 100), 0);  // plain temperature sampling
  p.top_k = kHeadSplitMaxK + 1;
  EXPECT_EQ(head_split_k(p, 1000), 0);
  p.top_k = 50;
  EXPECT_EQ(head_split_k(p, 50), 0);  // top_k >= vocab is no top-k in pick()
}

TEST(HeadSplit, GreedyEqualsArgmaxWithTiesAndNaN) {
  std::mt19937 rng(11);
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float inf = std::numeric_limits<float>::infinity();
  for (int trial = 0; trial < 3000; ++trial) {
    const int vocab = 1 + static_cast<int>(rng() % 300);
    std::vector<float> l(vocab);
    const int levels = 1 + static_cast<int>(rng() % 6);  // few distinct values: many ties
    for (auto& v : l) {
      const uint32_t r = rng() % 100;
      v = r < 8 ? nan : r < 10 ? inf : r < 12 ? -inf : static_cast<float>(rng() % levels);
    }
    if (trial % 50 == 0) std::fill(l.begin(), l.end(), nan);  // all NaN: id 0
    const auto bounds = random_bounds(rng, vocab, 1 + static_cast<int>(rng() % 6));
    TokenPick p;  // greedy
    ASSERT_EQ(split_pick(l, bounds, p), Sampler::pick(l.data(), vocab, p)) << "trial " << trial;
    p.temperature = 0.8f;
    p.top_k = 1;
    ASSERT_EQ(split_pick(l, bounds, p), Sampler::pick(l.data(), vocab, p)) << "trial " << trial;
  }
}

TEST(HeadSplit, TopKSamplingEqualsPick) {
  std::mt19937 rng(5);
  std::normal_distribution<float> nd;
  std::uniform_real_distribution<double> ud(0.0, 1.0);
  int decided = 0;
  for (int trial = 0; trial < 2000; ++trial) {
    const int vocab = 70 + static_cast<int>(rng() % 400);
    std::vector<float> l(vocab);
    const bool ties = trial % 3 == 0;
    for (auto& v : l) v = ties ? static_cast<float>(rng() % 7) : nd(rng) * 3.0f;
    const auto bounds = random_bounds(rng, vocab, 1 + static_cast<int>(rng() % 6));
    TokenPick p;
    p.temperature = trial % 4 == 0 ? 0.3f : 1.1f;
    p.top_k = 2 + static_cast<int>(rng() % (kHeadSplitMaxK - 1));
    p.top_p = trial % 2 ? 1.0f : 0.5f + 0.45f * static_cast<float>(ud(rng));
    for (int draw = 0; draw < 20; ++draw) {
      p.u = ud(rng);
      const int32_t got = split_pick(l, bounds, p);
      ASSERT_EQ(got, Sampler::pick(l.data(), vocab, p))
          << "trial " << trial << " top_k " << p.top_k << " top_p " << p.top_p << " u " << p.u;
      ++decided;
    }
  }
  EXPECT_EQ(decided, 2000 * 20);
}

TEST(HeadSplit, NonFiniteTopKRowGoesToTheWholeHead) {
  std::vector<float> l(200, 0.5f);
  l[150] = std::numeric_limits<float>::infinity();
  TokenPick p;
  p.temperature = 1.0f;
  p.top_k = 10;
  p.u = 0.3;
  EXPECT_EQ(split_pick(l, {0, 100, 200}, p), -1);
  l[150] = std::numeric_limits<float>::quiet_NaN();
  EXPECT_EQ(split_pick(l, {0, 100, 200}, p), -1);
  l[150] = 0.25f;  // finite again: decided, and equal to pick()
  EXPECT_EQ(split_pick(l, {0, 100, 200}, p), Sampler::pick(l.data(), 200, p));
}

}  // namespace
}  // namespace gptoss
