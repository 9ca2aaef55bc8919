// forward_test.cpp: the CPU engine on a small random in-memory model against the naive double
// reference (random_model.h), the KV ring against full recompute, batch invariance with mixed
// prompt chunks and decode rows, and option / row validation.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <map>
#include <memory>
#include <vector>

#include "common/error.h"
#include "backend/engine.h"
#include "backend_cpu/cpu_model.h"
#include "backend/sampler.h"
#include "sched/scheduler.h"
#include "random_model.h"

namespace gptoss {
namespace {

using testing::RandomModel;

std::vector<int> test_tokens(int n, int vocab, int salt) {
  std::vector<int> t(n);
  for (int i = 0; i < n; ++i) t[i] = (i * 37 + salt * 11 + 5) % vocab;
  return t;
}

// Runs rows through the engine; returns logits [rows with kLogits][V].
std::vector<std::vector<float>> step(Engine& e, const std::vector<Row>& rows) {
  std::vector<float> flat;
  e.forward(rows, flat);
  const int V = e.config().vocab;
  std::vector<std::vector<float>> out(flat.size() / V);
  for (size_t i = 0; i < out.size(); ++i) out[i].assign(flat.begin() + i * V, flat.begin() + (i + 1) * V);
  return out;
}

std::vector<Row> chunk(int slot, const std::vector<int>& toks, int pos0, bool logits_all) {
  std::vector<Row> rows;
  for (size_t i = 0; i < toks.size(); ++i) {
    Row r;
    r.token = toks[i];
    r.slot = slot;
    r.pos = pos0 + static_cast<int>(i);
    r.flags = (r.pos == 0 ? Row::kNewSeq : 0u) |
              ((logits_all || i + 1 == toks.size()) ? Row::kLogits : 0u);
    rows.push_back(r);
  }
  return rows;
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * 4) == 0;
}

// Tolerance of fp32 engine vs double reference. The engine rounds every product/sum to fp32
// (relative 6e-8 per op); dot products are at most 128 long, three layers feed each other and
// the logits are O(1..10). Observed max error is 3e-6; 3e-5 absolute + 3e-6 relative (about
// 10x) leaves room for compiler/libm differences yet fails on any real mistake (a wrong rope
// pair, mask, scale or nibble moves logits by > 1e-2).
constexpr double kAbsTol = 3e-5, kRelTol = 3e-6;

TEST(EngineForward, MatchesNaiveDoubleReference) {
  RandomModel m(testing::small_config(), 1);
  BackendOptions opt;
  opt.ctx = 32;
  opt.max_slots = 2;
  auto eng = make_cpu_engine(m.weights(), opt);
  const auto toks = test_tokens(14, m.c.vocab, 0);  // longer than the window (4)
  auto ref = testing::ref::forward(m, toks);
  auto got = step(*eng, chunk(0, toks, 0, true));
  ASSERT_EQ(got.size(), toks.size());
  double max_err = 0;
  for (size_t t = 0; t < toks.size(); ++t)
    for (int v = 0; v < m.c.vocab; ++v) {
      double err = std::fabs(got[t][v] - ref[t][v]);
      max_err = std::max(max_err, err);
      ASSERT_LE(err, kAbsTol + kRelTol * std::fabs(ref[t][v])) << "pos " << t << " id " << v;
    }
  std::printf("max |engine - reference| = %.3g\n", max_err);
  // The logits are not trivially small (the comparison means something).
  double mx = 0;
  for (double v : ref.back()) mx = std::max(mx, std::fabs(v));
  EXPECT_GT(mx, 1.0);
}

TEST(EngineForward, DecodeEqualsChunkAndRingEqualsFullRecompute) {
  RandomModel m(testing::small_config(), 2);
  BackendOptions opt;
  opt.ctx = 32;
  opt.max_slots = 3;
  auto eng = make_cpu_engine(m.weights(), opt);
  const auto toks = test_tokens(13, m.c.vocab, 3);
  // Slot 0: the whole prompt as one chunk. Slot 1: one token per step (ring wraps 3 times).
  auto whole = step(*eng, chunk(0, toks, 0, true));
  for (int t = 0; t < 13; ++t) {
    auto one = step(*eng, chunk(1, {toks[t]}, t, true));
    ASSERT_TRUE(same_bits(one[0], whole[t])) << "decode step " << t;
  }
  // Slot 2, reused for each prefix: recompute tokens[0..t] from scratch (kNewSeq at pos 0).
  for (int t = 0; t < 13; t += 3) {
    std::vector<int> prefix(toks.begin(), toks.begin() + t + 1);
    auto fresh = step(*eng, chunk(2, prefix, 0, false));
    ASSERT_TRUE(same_bits(fresh[0], whole[t])) << "prefix " << t;
  }
  // And against the double reference at the last position (ring wrapped).
  auto ref = testing::ref::forward(m, toks);
  for (int v = 0; v < m.c.vocab; ++v)
    ASSERT_LE(std::fabs(whole[12][v] - ref[12][v]), kAbsTol + kRelTol * std::fabs(ref[12][v]));
}

TEST(EngineForward, BatchInvariantWithMixedChunksAndDecodes) {
  RandomModel m(testing::small_config(), 3);
  BackendOptions opt;
  opt.ctx = 40;
  opt.max_slots = 16;
  const auto target = test_tokens(9, m.c.vocab, 7);
  // Alone: prompt of 6 as one chunk, then 3 decode steps.
  std::vector<std::vector<float>> alone;
  {
    auto eng = make_cpu_engine(m.weights(), opt);
    alone.push_back(step(*eng, chunk(5, {target.begin(), target.begin() + 6}, 0, false))[0]);
    for (int t = 6; t < 9; ++t) alone.push_back(step(*eng, chunk(5, {target[t]}, t, true))[0]);
  }
  // Batched: 15 other sequences at different positions, prompt chunks mixed with decodes.
  auto eng = make_cpu_engine(m.weights(), opt);
  std::vector<int> len(16, 0);
  auto others = [&](int stepno, std::vector<Row>& rows) {
    for (int s = 0; s < 16; ++s) {
      if (s == 5) continue;
      int n = (s + stepno) % 4 == 0 ? 5 : 1;  // some slots send a chunk, others one token
      if (stepno == 7 && s % 5 == 0) len[s] = 0;  // restart a few sequences mid-way
      auto toks = test_tokens(n, m.c.vocab, s * 3 + stepno);
      if (len[s] + n > opt.ctx) len[s] = 0;
      auto r = chunk(s, toks, len[s], s % 2 == 0);
      len[s] += n;
      rows.insert(rows.end(), r.begin(), r.end());
    }
  };
  std::vector<std::vector<float>> batched;
  {
    std::vector<Row> rows;
    auto warm = std::vector<Row>();
    others(0, warm);  // a first step without the target, so others are at various positions
    step(*eng, warm);
    others(1, rows);
    auto t = chunk(5, {target.begin(), target.begin() + 6}, 0, false);
    rows.insert(rows.begin() + 7, t.begin(), t.end());  // target in the middle of the batch
    std::vector<float> flat;
    eng->forward(rows, flat);
    int idx = 0;
    for (size_t i = 0; i < rows.size(); ++i) {
      if (!(rows[i].flags & Row::kLogits)) continue;
      if (rows[i].slot == 5) batched.emplace_back(flat.begin() + idx * m.c.vocab, flat.begin() + (idx + 1) * m.c.vocab);
      ++idx;
    }
  }
  for (int t = 6; t < 9; ++t) {
    std::vector<Row> rows;
    others(t, rows);
    auto r = chunk(5, {target[t]}, t, true);
    rows.insert(rows.begin() + (t * 5) % rows.size(), r.begin(), r.end());
    std::vector<float> flat;
    eng->forward(rows, flat);
    int idx = 0;
    for (size_t i = 0; i < rows.size(); ++i) {
      if (!(rows[i].flags & Row::kLogits)) continue;
      if (rows[i].slot == 5) batched.emplace_back(flat.begin() + idx * m.c.vocab, flat.begin() + (idx + 1) * m.c.vocab);
      ++idx;
    }
  }
  ASSERT_EQ(batched.size(), alone.size());
  for (size_t i = 0; i < alone.size(); ++i) EXPECT_TRUE(same_bits(alone[i], batched[i])) << "step " << i;
}

// The paged KV cache: the scheduler hands out blocks of a pool smaller than slots x ctx (so
// sequences wait for blocks and reuse ones others held, in scrambled order); every logit row of
// every request has the bits it has with the unpaged cache.
TEST(EngineForward, PagedCacheGivesTheLogitsOfTheUnpagedOne) {
  RandomModel m(testing::small_config(), 5);
  const int V = m.c.vocab;
  std::vector<std::vector<int32_t>> prompts;
  for (int i = 0; i < 10; ++i) {
    auto t = test_tokens(3 + (i * 5) % 17, V, i);
    prompts.emplace_back(t.begin(), t.end());
  }
  // Per request, every row of logits it was given, in order.
  using Seen = std::map<uint64_t, std::vector<std::vector<float>>>;
  class Recorder : public TokenChooser {
   public:
    Recorder(Seen& seen, uint64_t id) : seen_(seen), id_(id) {}
    int32_t choose(const float* logits, int vocab) override {
      seen_[id_].emplace_back(logits, logits + vocab);
      return Sampler::argmax(logits, vocab);
    }

   private:
    Seen& seen_;
    uint64_t id_;
  };
  auto run = [&](int block_tokens, int blocks, int* most) {
    BackendOptions opt;
    opt.ctx = 40;
    opt.max_slots = 4;
    opt.kv_block_tokens = block_tokens;
    opt.kv_blocks = blocks;
    auto eng = make_cpu_engine(m.weights(), opt);
    EXPECT_EQ(eng->backend().pages_kv(), block_tokens > 0);
    SchedulerOptions so;
    so.max_slots = 4;
    so.chunk_tokens = 7;
    so.ctx = 40;
    so.ignore_eos = true;
    so.kv_block_tokens = block_tokens;
    so.kv_blocks = blocks;
    Seen seen;
    Scheduler sch(so, [&seen](uint64_t id) { return std::make_unique<Recorder>(seen, id); });
    for (size_t i = 0; i < prompts.size(); ++i) sch.submit(Request{i, prompts[i], 9, 0, -1});
    *most = 0;
    while (sch.busy()) {
      sch.run_step(*eng);
      *most = std::max(*most, sch.active());
    }
    return seen;
  };
  int most_unpaged = 0, most_paged = 0;
  const Seen unpaged = run(0, 0, &most_unpaged);
  for (int B : {1, 4, 16}) {
    const int blocks = (40 + B - 1) / B + 8 / B + 1;  // one sequence and a little more
    const Seen paged = run(B, blocks, &most_paged);
    EXPECT_EQ(most_unpaged, 4);
    EXPECT_LT(most_paged, 4) << "blocks of " << B << ": the pool held nothing back";
    ASSERT_EQ(paged.size(), unpaged.size());
    for (const auto& [id, rows] : unpaged) {
      ASSERT_EQ(paged.at(id).size(), rows.size());
      for (size_t k = 0; k < rows.size(); ++k)
        ASSERT_TRUE(same_bits(paged.at(id)[k], rows[k])) << "blocks of " << B << ", request " << id << " row " << k;
    }
  }
}

TEST(EngineForward, APagedCacheRefusesARowWithoutABlock) {
  RandomModel m(testing::small_config(), 6);
  BackendOptions opt;
  opt.ctx = 16;
  opt.max_slots = 2;
  opt.kv_block_tokens = 4;
  opt.kv_blocks = 8;
  auto eng = make_cpu_engine(m.weights(), opt);
  std::vector<Row> rows = chunk(0, {1, 2, 3}, 0, false);  // block -1
  std::vector<float> logits;
  try {
    eng->forward(rows, logits);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("names block -1; the pool has blocks [0, 8)"), std::string::npos) << e.what();
  }
  for (Row& r : rows) r.block = 8;
  EXPECT_THROW(eng->forward(rows, logits), Error);
}

TEST(EngineForward, RejectsBadOptionsAndRows) {
  RandomModel m(testing::small_config(), 4);
  auto w = m.weights();
  BackendOptions opt;
  opt.ctx = 0;
  EXPECT_THROW(make_cpu_engine(w, opt), Error);
  opt.ctx = m.c.max_context + 1;
  EXPECT_THROW(make_cpu_engine(w, opt), Error);
  opt.ctx = 16;
  opt.max_slots = 0;
  EXPECT_THROW(make_cpu_engine(w, opt), Error);
  opt.max_slots = 2;
  opt.threads = -1;
  EXPECT_THROW(make_cpu_engine(w, opt), Error);
  opt.threads = 0;
  auto eng = make_cpu_engine(w, opt);
  // KV bytes: 2 (k, v) x 4 bytes x 2 slots x kv_dim 64 x (4 + 16 + 4 positions).
  EXPECT_EQ(eng->kv_cache_bytes(), 2u * 4 * 2 * 64 * (4 + 16 + 4));
  std::vector<float> lg;
  auto bad = [&](Row r) {
    std::vector<Row> rows{r};
    EXPECT_THROW(eng->forward(rows, lg), Error);
  };
  bad(Row{1, 2, 0, Row::kNewSeq});     // slot out of range
  bad(Row{1, -1, 0, Row::kNewSeq});
  bad(Row{1, 0, 16, 0});               // position >= ctx
  bad(Row{1, 0, -1, 0});
  bad(Row{m.c.vocab, 0, 0, Row::kNewSeq});  // token out of range
  bad(Row{1, 0, 3, 0});                // does not continue the (empty) sequence
  bad(Row{1, 0, 1, Row::kNewSeq});     // new sequence not at 0
  // A failed step changes nothing: the engine still works and positions continue.
  std::vector<Row> ok{Row{1, 0, 0, Row::kNewSeq | Row::kLogits}, Row{2, 0, 1, Row::kLogits}};
  eng->forward(ok, lg);
  EXPECT_EQ(lg.size(), 2u * m.c.vocab);
  std::vector<Row> gap{Row{1, 0, 3, Row::kLogits}};
  EXPECT_THROW(eng->forward(gap, lg), Error);
  std::vector<Row> restart_twice{Row{1, 1, 0, Row::kNewSeq}, Row{1, 1, 1, 0}, Row{1, 1, 0, Row::kNewSeq}};
  EXPECT_THROW(eng->forward(restart_twice, lg), Error);
  std::vector<Row> next{Row{1, 0, 2, 0}};
  eng->forward(next, lg);
  EXPECT_EQ(lg.size(), 0u);
}

}  // namespace
}  // namespace gptoss
