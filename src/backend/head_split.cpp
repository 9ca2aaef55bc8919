// head_split.cpp: the vocab-parallel LM head's candidates (head_split.h).
#include "backend/head_split.h"

#include <algorithm>
#include <cmath>

#include "backend/sampler.h"
#include "common/error.h"

namespace gptoss {

int head_split_k(const TokenPick& p, int vocab) {
  if (p.temperature == 0.0f || p.top_k == 1) return 1;
  if (p.top_k >= 2 && p.top_k <= kHeadSplitMaxK && p.top_k < vocab) return p.top_k;
  return 0;
}

HeadRow head_row_init(int k) {
  GPTOSS_ASSERT(k >= 1 && k <= kHeadSplitMaxK);
  HeadRow r{};
  r.k = k;
  return r;
}

namespace {

// Logit desc, ties lower id first (Sampler::pick's order), for finite values.
bool before(const HeadCand& a, const HeadCand& b) {
  return a.value > b.value || (a.value == b.value && a.id < b.id);
}

}  // namespace

void head_row_merge(HeadRow& row, const float* logits, int v0, int n, std::vector<int32_t>& scratch) {
  if (n <= 0) return;
  if (row.k == 1) {
    // Sampler::argmax over the slice, then the same rule across slices (ascending ids): a later
    // candidate wins only with a larger value, or a number over a NaN.
    int best = 0;
    for (int j = 1; j < n; ++j)
      if (logits[j] > logits[best] || (std::isnan(logits[best]) && !std::isnan(logits[j]))) best = j;
    const HeadCand c{logits[best], v0 + best};
    HeadCand& b = row.cand[0];
    if (row.count == 0 || c.value > b.value || (std::isnan(b.value) && !std::isnan(c.value))) b = c;
    row.count = 1;
    return;
  }
  const int k = row.k;
  for (int j = 0; j < n; ++j)
    if (!std::isfinite(logits[j])) {
      row.flags |= kHeadRowNonFinite;
      return;  // rank 0 chooses this row from the whole head
    }
  const int take = std::min(k, n);
  scratch.resize(n);
  for (int j = 0; j < n; ++j) scratch[j] = j;
  std::partial_sort(scratch.begin(), scratch.begin() + take, scratch.end(), [&](int32_t a, int32_t b) {
    return logits[a] > logits[b] || (logits[a] == logits[b] && a < b);
  });
  HeadCand merged[2 * kHeadSplitMaxK];
  int m = 0, i = 0, j = 0;
  while (m < k && (i < row.count || j < take)) {
    if (j == take) {
      merged[m++] = row.cand[i++];
      continue;
    }
    const HeadCand s{logits[scratch[j]], v0 + scratch[j]};
    if (i < row.count && before(row.cand[i], s)) {
      merged[m++] = row.cand[i++];
    } else {
      merged[m++] = s;
      ++j;
    }
  }
  std::copy(merged, merged + m, row.cand);
  row.count = m;
}

int32_t head_row_pick(const HeadRow& row, const TokenPick& p) {
  if (row.k == 1) return row.count == 1 ? row.cand[0].id : -1;
  if ((row.flags & kHeadRowNonFinite) || row.count != row.k) return -1;
  float vals[kHeadSplitMaxK];
  int32_t ids[kHeadSplitMaxK];
  for (int i = 0; i < row.count; ++i) {
    vals[i] = row.cand[i].value;
    ids[i] = row.cand[i].id;
  }
  return Sampler::pick_sorted(vals, ids, static_cast<size_t>(row.count), p);
}

}  // namespace gptoss
