// tiny_model_test.cpp: batch invariance on the tiny synthetic model file (fixture tiny_model):
// one prompt's greedy continuation and logits bits are the same alone and batched with 63 other
// sequences at other positions, with prompt chunks mixed into decode steps and slots restarting.
#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include "cpu/ops.h"
#include "backend/engine.h"
#include "model/model_file.h"

namespace gptoss {
namespace {

std::vector<int> toks(int n, int salt) {
  std::vector<int> t(n);
  for (int i = 0; i < n; ++i) t[i] = (i * 7919 + salt * 104729 + 13) % 200000;
  return t;
}

TEST(EngineTinyModel, GreedyAndLogitsBatchInvariantWith63Others) {
  ModelFile model(GPTOSS_TEST_TINY);
  const int V = model.config().vocab;
  const auto prompt = toks(10, 0);
  const int gen = 12;  // 10 + 12 positions: past the sliding window (16) of the even layers
  BackendOptions opt;
  opt.ctx = 64;

  // Alone.
  std::vector<std::vector<float>> alone_logits;
  std::vector<int> alone_tokens;
  {
    opt.max_slots = 1;
    auto eng = make_cpu_engine(model, opt);
    std::vector<Row> rows;
    for (int i = 0; i < 10; ++i)
      rows.push_back(Row{prompt[i], 0, i, (i == 0 ? Row::kNewSeq : 0u) | (i == 9 ? Row::kLogits : 0u)});
    std::vector<float> lg;
    for (int s = 0; s <= gen; ++s) {
      eng->forward(rows, lg);
      alone_logits.push_back(lg);
      int next = cpu::f32_argmax(lg.data(), V);
      alone_tokens.push_back(next);
      rows = {Row{next, 0, 10 + s, Row::kLogits}};
    }
  }

  // Batched: target in slot 37 of 64.
  opt.max_slots = 64;
  auto eng = make_cpu_engine(model, opt);
  const int target = 37;
  std::vector<int> len(64, 0), last(64, 0);
  std::vector<int> batched_tokens;
  int target_next = -1;
  for (int s = 0; s <= gen; ++s) {
    std::vector<Row> rows;
    for (int slot = 0; slot < 64; ++slot) {
      if (slot == target) {
        if (s == 0)
          for (int i = 0; i < 10; ++i)
            rows.push_back(Row{prompt[i], slot, i,
                               (i == 0 ? Row::kNewSeq : 0u) | (i == 9 ? Row::kLogits : 0u)});
        else
          rows.push_back(Row{target_next, slot, 10 + s - 1, Row::kLogits});
        continue;
      }
      // Others: a prompt chunk (1..12 tokens) at start or restart, otherwise one decode token.
      bool restart = s == 0 || (s % 6 == slot % 6 && len[slot] > 8) || len[slot] + 12 > opt.ctx;
      if (restart) len[slot] = 0;
      const int n = restart ? 1 + (slot * 5 + s) % 12 : 1;
      // A quarter of them also want logits (and continue greedily), so the LM head sees varied
      // batches too; the rest are fed fixed tokens (keeps the test fast).
      const bool want = slot % 4 == 0;
      auto t = restart ? toks(n, slot * 31 + s)
                       : std::vector<int>{want ? last[slot] : toks(1, slot + 64 * s)[0]};
      for (int i = 0; i < n; ++i)
        rows.push_back(Row{t[i], slot, len[slot] + i,
                           (len[slot] + i == 0 ? Row::kNewSeq : 0u) |
                               (want && i == n - 1 ? Row::kLogits : 0u)});
      len[slot] += n;
    }
    std::vector<float> lg;
    eng->forward(rows, lg);
    int idx = 0;
    for (const Row& r : rows) {
      if (!(r.flags & Row::kLogits)) continue;
      const float* l = lg.data() + static_cast<size_t>(idx++) * V;
      int next = cpu::f32_argmax(l, V);
      if (r.slot == target) {
        ASSERT_EQ(0, std::memcmp(l, alone_logits[s].data(), sizeof(float) * V)) << "step " << s;
        target_next = next;
        batched_tokens.push_back(next);
      } else {
        last[r.slot] = next;
      }
    }
  }
  EXPECT_EQ(batched_tokens, alone_tokens);
}

}  // namespace
}  // namespace gptoss
