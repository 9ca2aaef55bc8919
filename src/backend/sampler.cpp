// sampler.cpp: greedy / temperature / top-k / top-p sampling with a splitmix64 stream, so the same
// seed and logits give the same token on any machine (no std:: distributions).
//
// Algorithm (temperature > 0):
//   1. candidates: all ids in id order; with top_k > 0 the k largest logits (ties: lower id first),
//      ordered by logit descending; with top_p < 1 the candidates are ordered by logit descending
//      (ties: lower id first) as well.
//   2. p_i = exp((l_i - l_max) / T) in double (unnormalised).
//   3. top_p < 1: keep the shortest prefix whose mass >= top_p * total mass (at least one).
//   4. u = next_double() in [0, 1); pick the first candidate whose running mass exceeds u * mass.
#include "backend/sampler.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "common/error.h"

namespace gptoss {
namespace {

uint64_t splitmix64(uint64_t& state) {
  uint64_t z = (state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

int32_t argmax_lowest(const float* x, int n) {
  int32_t best = 0;
  for (int i = 1; i < n; ++i)
    if (x[i] > x[best] || (std::isnan(x[best]) && !std::isnan(x[i]))) best = i;
  return best;
}

}  // namespace

Sampler::Sampler(const SamplerParams& p) : p_(p), rng_state_(p.seed) {
  if (!(p.temperature >= 0.0f) || !std::isfinite(p.temperature))
    fail("sampler: temperature %g must be >= 0", p.temperature);
  if (p.top_k < 0) fail("sampler: top-k %d must be >= 0 (0 = off)", p.top_k);
  if (!(p.top_p > 0.0f && p.top_p <= 1.0f)) fail("sampler: top-p %g must be in (0, 1]", p.top_p);
}

TokenPick Sampler::next_pick() {
  TokenPick t;
  t.temperature = p_.temperature;
  t.top_k = p_.top_k;
  t.top_p = p_.top_p;
  if (!(p_.temperature == 0.0f || p_.top_k == 1))
    t.u = static_cast<double>(splitmix64(rng_state_) >> 11) * 0x1.0p-53;
  return t;
}

int32_t Sampler::sample(const float* logits, int vocab) { return pick(logits, vocab, next_pick()); }

int32_t Sampler::argmax(const float* logits, int vocab) { return argmax_lowest(logits, vocab); }

int32_t Sampler::pick(const float* logits, int vocab, const TokenPick& p) {
  GPTOSS_ASSERT(vocab > 0);
  if (p.temperature == 0.0f || p.top_k == 1) return argmax_lowest(logits, vocab);
  auto before = [&](int32_t a, int32_t b) {
    return logits[a] > logits[b] || (logits[a] == logits[b] && a < b);
  };
  std::vector<int32_t> cand;
  if (p.top_k > 0 && p.top_k < vocab) {
    cand.resize(vocab);
    std::iota(cand.begin(), cand.end(), 0);
    std::partial_sort(cand.begin(), cand.begin() + p.top_k, cand.end(), before);
    cand.resize(p.top_k);
  } else {
    cand.resize(vocab);
    std::iota(cand.begin(), cand.end(), 0);
    if (p.top_p < 1.0f) std::sort(cand.begin(), cand.end(), before);
  }
  std::vector<float> vals(cand.size());
  for (size_t i = 0; i < cand.size(); ++i) vals[i] = logits[cand[i]];
  return pick_sorted(vals.data(), cand.data(), cand.size(), p);
}

int32_t Sampler::pick_sorted(const float* vals, const int32_t* ids, size_t n, const TokenPick& p) {
  GPTOSS_ASSERT(n > 0);
  float mx = vals[0];
  for (size_t i = 0; i < n; ++i) mx = std::max(mx, vals[i]);
  std::vector<double> prob(n);
  double total = 0;
  for (size_t i = 0; i < n; ++i) {
    prob[i] = std::exp((static_cast<double>(vals[i]) - mx) / p.temperature);
    total += prob[i];
  }
  size_t keep = n;
  if (p.top_p < 1.0f) {
    double need = p.top_p * total, acc = 0;
    for (size_t i = 0; i < n; ++i) {
      acc += prob[i];
      if (acc >= need) {
        keep = i + 1;
        break;
      }
    }
    total = acc;
  }
  const double target = p.u * total;
  double acc = 0;
  for (size_t i = 0; i < keep; ++i) {
    acc += prob[i];
    if (acc > target) return ids[i];
  }
  return ids[keep - 1];
}

}  // namespace gptoss
