// test_scheduler.cpp: the continuous-batching scheduler against the fake engine: every sequence
// gets exactly the tokens it gets alone (reference_tokens), whatever -b and --chunk; slots are
// refilled at once; prompts are chunked within the step budget and mixed with decode rows; stop
// tokens, max tokens and the context end sequences; chat continuations; a cancelled turn; pipelined
// plans.
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <set>

#include "common/error.h"
#include "backend/sampler.h"
#include "fake_engine.h"
#include "sched/scheduler.h"

namespace gptoss {
namespace {

using test::FakeEngine;

constexpr int kVocab = 64;

std::vector<std::vector<int32_t>> make_prompts(int n) {
  std::vector<std::vector<int32_t>> p;
  for (int i = 0; i < n; ++i) {
    std::vector<int32_t> ids;
    int len = 1 + (i * 7) % 23;
    for (int k = 0; k < len; ++k) ids.push_back((i * 31 + k * 17) % kVocab);
    p.push_back(ids);
  }
  return p;
}

struct RunResult {
  std::map<uint64_t, Finished> done;
  std::vector<std::vector<Row>> steps;
};

RunResult run_all(const std::vector<std::vector<int32_t>>& prompts, SchedulerOptions so,
                  int max_new, bool random) {
  FakeEngine eng(kVocab, so.max_slots, so.ctx);
  Scheduler sch(so, test::fake_factory(random));
  RunResult r;
  sch.on_finish = [&](Finished&& f) {
    EXPECT_EQ(r.done.count(f.id), 0u);
    r.done[f.id] = std::move(f);
  };
  for (size_t i = 0; i < prompts.size(); ++i) sch.submit(Request{i, prompts[i], max_new, 0, -1});
  int guard = 0;
  while (sch.busy()) {
    EXPECT_TRUE(sch.run_step(eng));
    if (++guard > 100000) {
      ADD_FAILURE() << "scheduler does not finish";
      break;
    }
  }
  r.steps = eng.steps;
  return r;
}

SchedulerOptions opts(int slots, int chunk, int ctx = 4096) {
  SchedulerOptions so;
  so.max_slots = slots;
  so.chunk_tokens = chunk;
  so.ctx = ctx;
  so.stop_ids = {7, 9};
  return so;
}

TEST(RunScheduler, MatchesReferenceForEveryBatchAndChunkSize) {
  auto prompts = make_prompts(40);
  for (bool random : {false, true}) {
    for (int slots : {1, 3, 8, 64}) {
      for (int chunk : {1, 4, 256}) {
        RunResult r = run_all(prompts, opts(slots, chunk), 12, random);
        ASSERT_EQ(r.done.size(), prompts.size());
        for (size_t i = 0; i < prompts.size(); ++i) {
          FinishReason why;
          auto ref = test::reference_tokens(prompts[i], i, 12, 4096, {7, 9}, false, random, kVocab, &why);
          EXPECT_EQ(r.done[i].generated, ref) << "prompt " << i << " slots " << slots << " chunk " << chunk;
          EXPECT_EQ(r.done[i].reason, why);
        }
      }
    }
  }
}

TEST(RunScheduler, StopTokensEndSequencesAndAreIncluded) {
  auto prompts = make_prompts(40);
  RunResult r = run_all(prompts, opts(4, 16), 50, false);
  int stopped = 0;
  for (auto& [id, f] : r.done) {
    if (f.reason == FinishReason::Stop) {
      ++stopped;
      int32_t last = f.generated.back();
      EXPECT_TRUE(last == 7 || last == 9);
      for (size_t k = 0; k + 1 < f.generated.size(); ++k)
        EXPECT_TRUE(f.generated[k] != 7 && f.generated[k] != 9);
    } else {
      EXPECT_EQ(f.generated.size(), 50u);
    }
  }
  EXPECT_GT(stopped, 0) << "the test prompts should hit a stop id";
  EXPECT_LT(stopped, 40);
}

TEST(RunScheduler, IgnoreEosRunsToMaxTokens) {
  auto prompts = make_prompts(10);
  SchedulerOptions so = opts(4, 16);
  so.ignore_eos = true;
  RunResult r = run_all(prompts, so, 30, false);
  for (size_t i = 0; i < prompts.size(); ++i) {
    EXPECT_EQ(r.done[i].generated.size(), 30u);
    EXPECT_EQ(r.done[i].reason, FinishReason::MaxTokens);
    EXPECT_EQ(r.done[i].generated,
              test::reference_tokens(prompts[i], i, 30, 4096, {7, 9}, true, false, kVocab));
  }
}

TEST(RunScheduler, ContextEndsSequenceAtCtxTokens) {
  std::vector<std::vector<int32_t>> prompts{{1, 2, 3, 4, 5}};
  SchedulerOptions so = opts(1, 4, 12);
  so.stop_ids = {};
  RunResult r = run_all(prompts, so, 100, false);
  EXPECT_EQ(r.done[0].reason, FinishReason::Context);
  EXPECT_EQ(r.done[0].generated.size(), 12u - 5u);  // prompt + generated == ctx
  EXPECT_EQ(r.done[0].end_pos, 11);                 // the last token is never fed
}

TEST(RunScheduler, RejectsPromptThatLeavesNoRoom) {
  Scheduler sch(opts(1, 4, 8), test::fake_factory(false));
  EXPECT_THROW(sch.submit(Request{0, std::vector<int32_t>(8, 1), 4, 0, -1}), Error);
  EXPECT_THROW(sch.submit(Request{0, {}, 4, 0, -1}), Error);
  EXPECT_NO_THROW(sch.submit(Request{0, std::vector<int32_t>(7, 1), 4, 0, -1}));
}

TEST(RunScheduler, RefillsFreedSlotAtTheNextStep) {
  // Prompt 0 finishes after 1 token, the others run long; with 2 slots, prompt 2 must start in
  // the step right after prompt 0's last token, in prompt 0's slot.
  std::vector<std::vector<int32_t>> prompts{{5}, {6}, {8}, {10}};
  FakeEngine eng(kVocab, 2, 4096);
  SchedulerOptions so = opts(2, 64);
  so.stop_ids = {};
  Scheduler sch(so, test::fake_factory(false));
  std::vector<int> finished_at_step(4, -1);
  int step = 0;
  sch.on_finish = [&](Finished&& f) { finished_at_step[f.id] = step; };
  sch.submit(Request{0, prompts[0], 1, 0, -1});
  for (int i = 1; i < 4; ++i) sch.submit(Request{static_cast<uint64_t>(i), prompts[i], 5, 0, -1});
  while (sch.busy()) {
    ASSERT_LE(sch.active(), 2);
    sch.run_step(eng);
    ++step;
  }
  ASSERT_EQ(finished_at_step[0], 0);
  // Step 1 must hold the new sequence (kNewSeq) for prompt 2 in slot 0.
  const auto& s1 = eng.steps.at(1);
  bool started = false;
  for (const Row& r : s1)
    if ((r.flags & Row::kNewSeq) && r.slot == 0 && r.token == 8) started = true;
  EXPECT_TRUE(started);
  for (const auto& st : eng.steps) {
    std::set<int> slots;
    for (const Row& r : st) slots.insert(r.slot);
    EXPECT_LE(slots.size(), 2u);
  }
}

TEST(RunScheduler, ChunksPromptsWithinBudgetAndMixesDecodeRows) {
  // A short prompt starts decoding while a long one is still being prefilled in chunks.
  std::vector<int32_t> longp(40), shortp{3, 4};
  for (int i = 0; i < 40; ++i) longp[i] = (i * 5) % kVocab;
  FakeEngine eng(kVocab, 2, 4096);
  SchedulerOptions so = opts(2, 8);
  so.stop_ids = {};
  Scheduler sch(so, test::fake_factory(false));
  sch.submit(Request{0, shortp, 10, 0, -1});
  sch.submit(Request{1, longp, 3, 0, -1});
  std::map<uint64_t, std::vector<int32_t>> got;
  sch.on_finish = [&](Finished&& f) { got[f.id] = f.generated; };
  while (sch.busy()) sch.run_step(eng);
  bool mixed = false;
  for (const auto& st : eng.steps) {
    int decode = 0, prefill = 0;  // decode: short sequence's generated tokens; prefill: long prompt
    for (const Row& r : st) {
      if (r.slot == 0 && r.pos >= 2) ++decode;
      if (r.slot == 1 && r.pos < 40) ++prefill;
    }
    EXPECT_LE(static_cast<int>(st.size()), 8);
    if (decode > 0 && prefill > 0) mixed = true;
  }
  EXPECT_TRUE(mixed) << "a step should carry a decode row and a prompt chunk";
  EXPECT_EQ(eng.steps[0].size(), 8u);  // 2 rows of the short prompt + 6 of the long one
  EXPECT_EQ(got[0], test::reference_tokens(shortp, 0, 10, 4096, {}, false, false, kVocab));
  EXPECT_EQ(got[1], test::reference_tokens(longp, 1, 3, 4096, {}, false, false, kVocab));
  // Only the last row of a prompt asks for logits.
  int logits_rows_slot1 = 0;
  for (const auto& st : eng.steps)
    for (const Row& r : st)
      if (r.slot == 1 && (r.flags & Row::kLogits)) ++logits_rows_slot1;
  EXPECT_EQ(logits_rows_slot1, 3);  // one per generated token
}

TEST(RunScheduler, SeqChunkSharesTheBudgetAmongPrompts) {
  // A budget of 24 with at most 8 prompt rows per sequence: three 20-token prompts each get 8 rows
  // of the first step (one step of 24 rows, not 20 + 4), and every sequence still gets the tokens
  // it gets alone.
  std::vector<std::vector<int32_t>> prompts(3, std::vector<int32_t>(20));
  for (int i = 0; i < 3; ++i)
    for (int k = 0; k < 20; ++k) prompts[i][k] = (i * 11 + k * 3) % kVocab;
  SchedulerOptions so = opts(3, 24);
  so.stop_ids = {};
  so.seq_chunk = 8;
  RunResult r = run_all(prompts, so, 4, false);
  ASSERT_FALSE(r.steps.empty());
  std::map<int, int> first;
  for (const Row& row : r.steps[0]) ++first[row.slot];
  EXPECT_EQ(r.steps[0].size(), 24u);
  EXPECT_EQ(first, (std::map<int, int>{{0, 8}, {1, 8}, {2, 8}}));
  for (const auto& st : r.steps) {
    std::map<int, int> per;
    for (const Row& row : st) ++per[row.slot];
    for (const auto& [slot, n] : per) EXPECT_LE(n, 8) << "slot " << slot;
  }
  for (size_t i = 0; i < prompts.size(); ++i)
    EXPECT_EQ(r.done[i].generated,
              test::reference_tokens(prompts[i], static_cast<int>(i), 4, 4096, {}, false, false, kVocab));
  // Without the cap the first prompt takes 20 rows and the second the other 4.
  so.seq_chunk = 0;
  RunResult u = run_all(prompts, so, 4, false);
  std::map<int, int> ufirst;
  for (const Row& row : u.steps[0]) ++ufirst[row.slot];
  EXPECT_EQ(ufirst, (std::map<int, int>{{0, 20}, {1, 4}}));
}

TEST(RunScheduler, EnginePassesKeepTheBackendsRowLimits) {
  // One forward of slot 0's 20 prompt rows and slot 1's 3, through a backend that takes 16 rows a
  // pass and 8 of one slot: passes of 8, 8 and 4 + 3 rows, and the logits of both last rows are
  // those of the same rows in one pass.
  std::vector<Row> rows;
  for (int p = 0; p < 20; ++p)
    rows.push_back(Row{(p * 5) % kVocab, 0, p, p == 0 ? uint32_t(Row::kNewSeq) : 0u, -1});
  for (int p = 0; p < 3; ++p)
    rows.push_back(Row{(p * 3) % kVocab, 1, p, p == 0 ? uint32_t(Row::kNewSeq) : 0u, -1});
  rows[19].flags |= Row::kLogits;
  rows[22].flags |= Row::kLogits;
  FakeEngine cut(kVocab, 2, 64), whole(kVocab, 2, 64);
  cut.fake.pass_rows = 16;
  cut.fake.pass_seq_rows = 8;
  std::vector<float> lc, lw;
  cut.forward(rows, lc);
  whole.forward(rows, lw);
  ASSERT_EQ(cut.steps.size(), 3u);
  EXPECT_EQ(cut.steps[0].size(), 8u);
  EXPECT_EQ(cut.steps[1].size(), 8u);
  EXPECT_EQ(cut.steps[2].size(), 7u);
  EXPECT_EQ(whole.steps.size(), 1u);
  EXPECT_EQ(lc, lw);
  EXPECT_EQ(lc.size(), 2u * kVocab);
  // pass_end alone: the 16-row cap, the 8-per-slot cap, and at least one row.
  auto slot = [&](size_t i) { return rows[i].slot; };
  EXPECT_EQ(pass_end(0, rows.size(), 16, 1 << 30, slot), 16u);
  EXPECT_EQ(pass_end(0, rows.size(), 16, 8, slot), 8u);
  EXPECT_EQ(pass_end(16, rows.size(), 16, 8, slot), 23u);
  EXPECT_EQ(pass_end(0, rows.size(), 16, 0, slot), 1u);
}

TEST(RunScheduler, ChatContinuationReusesTheSlot) {
  // Turn 2 continues the sequence after turn 1 (start_pos = end_pos, same slot): the tokens equal
  // a single sequence of the whole history.
  FakeEngine eng(kVocab, 1, 4096);
  SchedulerOptions so = opts(1, 4);
  so.stop_ids = {};
  Scheduler sch(so, test::fake_factory(false));
  Finished f1, f2;
  sch.on_finish = [&](Finished&& f) { (f.id == 0 ? f1 : f2) = std::move(f); };
  std::vector<int32_t> t1{1, 2, 3}, t2{4, 5};
  sch.submit(Request{0, t1, 5, 0, 0});
  while (sch.busy()) sch.run_step(eng);
  ASSERT_EQ(f1.end_pos, 3 + 5 - 1);
  std::vector<int32_t> feed2{f1.generated.back()};
  feed2.insert(feed2.end(), t2.begin(), t2.end());
  sch.submit(Request{1, feed2, 4, f1.end_pos, 0});
  while (sch.busy()) sch.run_step(eng);  // the fake engine throws on a wrong position
  std::vector<int32_t> history = t1;
  history.insert(history.end(), f1.generated.begin(), f1.generated.end());
  history.insert(history.end(), t2.begin(), t2.end());
  EXPECT_EQ(f2.generated, test::reference_tokens(history, 1, 4, 4096, {}, false, false, kVocab));
  EXPECT_EQ(f2.end_pos, static_cast<int>(history.size()) + 4 - 1);
}

// A chat turn stopped by Ctrl-C: cancel() ends it between steps with what it generated (a prefix of
// the uninterrupted turn), and the next turn continues the sequence exactly as after a -n cut.
TEST(RunScheduler, CancelEndsATurnAndTheNextContinuesIt) {
  FakeEngine eng(kVocab, 2, 4096);
  SchedulerOptions so = opts(2, 4);
  so.stop_ids = {};
  Scheduler sch(so, test::fake_factory(false));
  std::vector<Finished> done;
  sch.on_finish = [&](Finished&& f) { done.push_back(std::move(f)); };
  std::vector<int32_t> t1{1, 2, 3, 4, 5, 6}, t2{7, 8};
  sch.submit(Request{0, t1, 50, 0, 0});
  sch.submit(Request{9, {3}, 50, 0, 1});
  sch.submit(Request{8, {3}, 5, 0, 1});  // queued behind request 9's slot
  int got0 = 0;
  sch.on_token = [&](uint64_t id, int32_t) { got0 += id == 0; };
  while (got0 < 3) sch.run_step(eng);
  EXPECT_TRUE(sch.cancel(8));                      // queued: ends with nothing generated
  ASSERT_EQ(done.size(), 1u);
  EXPECT_EQ(done[0].id, 8u);
  EXPECT_TRUE(done[0].generated.empty());
  EXPECT_EQ(done[0].reason, FinishReason::Cancelled);
  EXPECT_TRUE(sch.cancel(0));
  EXPECT_FALSE(sch.cancel(0));
  ASSERT_EQ(done.size(), 2u);
  const Finished f1 = done[1];
  EXPECT_EQ(f1.reason, FinishReason::Cancelled);
  EXPECT_STREQ(finish_reason_name(f1.reason), "interrupted");
  ASSERT_EQ(f1.generated.size(), 3u);
  std::vector<int32_t> whole = test::reference_tokens(t1, 0, 50, 4096, {}, false, false, kVocab);
  EXPECT_TRUE(std::equal(f1.generated.begin(), f1.generated.end(), whole.begin()));
  EXPECT_EQ(f1.end_pos, 6 + 3 - 1);  // the last generated token is not in the cache yet
  // The slot is free again: the next turn feeds that last token, then its own.
  std::vector<int32_t> feed2{f1.generated.back()};
  feed2.insert(feed2.end(), t2.begin(), t2.end());
  sch.submit(Request{1, feed2, 4, f1.end_pos, 0});
  while (sch.busy()) sch.run_step(eng);  // the fake engine throws on a wrong position
  std::vector<int32_t> history = t1;
  history.insert(history.end(), f1.generated.begin(), f1.generated.end());
  history.insert(history.end(), t2.begin(), t2.end());
  auto turn2 = std::find_if(done.begin(), done.end(), [](const Finished& f) { return f.id == 1; });
  ASSERT_NE(turn2, done.end());
  EXPECT_EQ(turn2->generated, test::reference_tokens(history, 1, 4, 4096, {}, false, false, kVocab));
}

TEST(RunScheduler, PipelinedPlansLeaveInFlightSequencesOut) {
  // Two plans before any commit (two micro-batches in flight): disjoint sequences.
  FakeEngine eng(kVocab, 4, 4096);
  SchedulerOptions so = opts(4, 2);
  so.stop_ids = {};
  Scheduler sch(so, test::fake_factory(false));
  auto prompts = make_prompts(4);
  std::map<uint64_t, std::vector<int32_t>> got;
  sch.on_finish = [&](Finished&& f) { got[f.id] = f.generated; };
  for (size_t i = 0; i < 4; ++i) sch.submit(Request{i, prompts[i], 6, 0, -1});
  std::vector<float> l1, l2;
  while (sch.busy()) {
    Scheduler::Step a, b;
    bool ha = sch.plan(a), hb = sch.plan(b);
    ASSERT_TRUE(ha);
    std::set<int> sa, sb;
    for (const Row& r : a.rows) sa.insert(r.slot);
    for (const Row& r : b.rows) sb.insert(r.slot);
    for (int s : sb) EXPECT_EQ(sa.count(s), 0u);
    eng.forward(a.rows, l1);
    if (hb) eng.forward(b.rows, l2);
    sch.commit(a, l1, kVocab);
    if (hb) sch.commit(b, l2, kVocab);
  }
  for (size_t i = 0; i < 4; ++i)
    EXPECT_EQ(got[i], test::reference_tokens(prompts[i], i, 6, 4096, {}, false, false, kVocab));
}

TEST(RunScheduler, PrefillIsNotStarvedByDecodeRows) {
  // 8 slots, budget 4: seven long-running decoders fill the budget, yet the eighth prompt is
  // prefilled alongside them (at least max(1, 4/8) = 1 token a step), not only after they end.
  FakeEngine eng(kVocab, 8, 4096);
  SchedulerOptions so = opts(8, 4);
  so.stop_ids = {};
  Scheduler sch(so, test::fake_factory(false));
  for (uint64_t i = 0; i < 7; ++i) sch.submit(Request{i, {static_cast<int32_t>(i + 1)}, 50, 0, -1});
  sch.submit(Request{7, std::vector<int32_t>(10, 3), 2, 0, -1});
  int finished7 = -1, step = 0;
  sch.on_finish = [&](Finished&& f) {
    if (f.id == 7) finished7 = step;
  };
  while (sch.busy()) {
    sch.run_step(eng);
    ++step;
  }
  EXPECT_GT(finished7, 0);
  EXPECT_LT(finished7, 20);  // long before the decoders' 50 steps
}


// An engine that chooses tokens itself (as the GPU backend does on its device): the scheduler
// hands it TokenPicks and commits the returned tokens. It must give every request exactly the
// tokens that host sampling of the same logits gives (Sampler::sample == Sampler::pick(next_pick)).
TEST(RunScheduler, DevicePicksGiveTheTokensOfHostSampling) {
  const auto prompts = make_prompts(20);
  for (SamplerParams base : {SamplerParams{0.0f, 0, 1.0f, 5}, SamplerParams{1.5f, 0, 1.0f, 5},
                             SamplerParams{1.0f, 4, 1.0f, 5}, SamplerParams{2.0f, 0, 0.8f, 5}}) {
    ChooserFactory factory = [base](uint64_t id) -> std::unique_ptr<TokenChooser> {
      SamplerParams p = base;
      p.seed = base.seed * 1000 + id;
      return std::make_unique<SamplerChooser>(p);
    };
    std::map<uint64_t, std::vector<int32_t>> out[2];
    int pick_steps = 0;
    bool used_draw = false;
    for (int mode = 0; mode < 2; ++mode) {
      auto eng = std::make_unique<FakeEngine>(kVocab, 6, 4096, /*picking=*/mode == 1);
      Scheduler sch(opts(6, 16), factory);
      sch.on_finish = [&](Finished&& f) { out[mode][f.id] = f.generated; };
      for (size_t i = 0; i < prompts.size(); ++i) sch.submit(Request{i, prompts[i], 12, 0, -1});
      while (sch.busy()) ASSERT_TRUE(sch.run_step(*eng));
      if (mode) {
        pick_steps = eng->fake.pick_steps;
        used_draw = eng->fake.used_draw;
      }
    }
    EXPECT_GT(pick_steps, 0);
    EXPECT_EQ(used_draw, base.temperature > 0.0f);  // greedy draws nothing
    ASSERT_EQ(out[0].size(), prompts.size());
    EXPECT_EQ(out[0], out[1]) << "T=" << base.temperature << " k=" << base.top_k;
  }
}

TEST(RunScheduler, ForwardPickRejectsAWrongNumberOfPicks) {
  FakeEngine eng(kVocab, 2, 64);
  Row rows[2] = {Row{1, 0, 0, Row::kNewSeq | Row::kLogits}, Row{2, 1, 0, Row::kNewSeq}};
  TokenPick picks[2];
  std::vector<int32_t> tokens;
  EXPECT_THROW(eng.forward_pick(rows, picks, tokens), Error);
  EXPECT_TRUE(eng.steps.empty());  // refused before the step ran
  eng.forward_pick(rows, std::span<const TokenPick>(picks, 1), tokens);
  ASSERT_EQ(tokens.size(), 1u);
}

}  // namespace
}  // namespace gptoss

namespace gptoss {
namespace {

// cancel(): a queued request leaves at once; a running one gets no further rows and frees its slot
// for the next queued request; the others' tokens are unchanged (reference_tokens).
TEST(RunScheduler, CancelFreesTheSlotForTheNextRequest) {
  FakeEngine eng(kVocab, 2, 4096);
  SchedulerOptions so = opts(2, 64);
  so.stop_ids = {};
  Scheduler sch(so, test::fake_factory(false));
  auto prompts = make_prompts(4);
  std::map<uint64_t, Finished> done;
  std::vector<uint64_t> token_ids;
  sch.on_token = [&](uint64_t id, int32_t) { token_ids.push_back(id); };
  sch.on_finish = [&](Finished&& f) { done[f.id] = std::move(f); };
  for (uint64_t i = 0; i < 4; ++i) sch.submit(Request{i, prompts[i], 20, 0, -1});
  ASSERT_TRUE(sch.run_step(eng));  // 0 and 1 admitted and prefilled; 2 and 3 queued
  ASSERT_TRUE(sch.run_step(eng));
  EXPECT_TRUE(sch.cancel(3));      // queued: gone at once, never had a slot
  ASSERT_EQ(done.count(3), 1u);
  EXPECT_EQ(done[3].reason, FinishReason::Cancelled);
  EXPECT_EQ(done[3].slot, -1);
  EXPECT_TRUE(done[3].generated.empty());
  EXPECT_TRUE(sch.cancel(0));      // running, nothing in flight: freed at once with its 2 tokens
  ASSERT_EQ(done.count(0), 1u);
  EXPECT_EQ(done[0].reason, FinishReason::Cancelled);
  EXPECT_EQ(done[0].generated.size(), 2u);
  EXPECT_FALSE(sch.cancel(0));     // already gone
  EXPECT_FALSE(sch.cancel(77));    // never existed
  EXPECT_EQ(sch.active(), 1);
  const size_t tokens_before = token_ids.size();
  ASSERT_TRUE(sch.run_step(eng));  // request 2 takes slot 0 in this very step
  bool two_admitted = false;
  for (const Row& r : eng.steps.back())
    if (r.slot == done[0].slot && (r.flags & Row::kNewSeq)) two_admitted = true;
  EXPECT_TRUE(two_admitted);
  for (size_t i = tokens_before; i < token_ids.size(); ++i) EXPECT_NE(token_ids[i], 0u);
  while (sch.busy()) ASSERT_TRUE(sch.run_step(eng));
  for (uint64_t i : {1u, 2u}) {
    EXPECT_EQ(done[i].reason, FinishReason::MaxTokens);
    EXPECT_EQ(done[i].generated,
              test::reference_tokens(prompts[i], i, 20, 4096, {}, false, false, kVocab));
  }
}

// A sequence cancelled while its rows are in flight (a pipelined engine) keeps its slot until that
// step is committed; the token chosen there is dropped and then the slot is freed.
TEST(RunScheduler, CancelWithRowsInFlightFreesAtTheCommit) {
  FakeEngine eng(kVocab, 2, 4096);
  SchedulerOptions so = opts(2, 64);
  so.stop_ids = {};
  Scheduler sch(so, test::fake_factory(false));
  auto prompts = make_prompts(2);
  std::map<uint64_t, Finished> done;
  int tokens_of_0 = 0;
  sch.on_token = [&](uint64_t id, int32_t) { tokens_of_0 += id == 0; };
  sch.on_finish = [&](Finished&& f) { done[f.id] = std::move(f); };
  for (uint64_t i = 0; i < 2; ++i) sch.submit(Request{i, prompts[i], 8, 0, -1});
  std::vector<float> logits;
  Scheduler::Step a;
  ASSERT_TRUE(sch.plan(a));
  eng.forward(a.rows, logits);
  EXPECT_TRUE(sch.cancel(0));
  EXPECT_EQ(done.count(0), 0u);  // rows in flight: not yet
  EXPECT_EQ(sch.active(), 2);
  Scheduler::Step b;
  EXPECT_FALSE(sch.plan(b));     // nothing else may run meanwhile (1 is in flight too)
  sch.commit(a, logits, kVocab);
  ASSERT_EQ(done.count(0), 1u);
  EXPECT_EQ(done[0].reason, FinishReason::Cancelled);
  EXPECT_TRUE(done[0].generated.empty());
  EXPECT_EQ(tokens_of_0, 0);
  EXPECT_EQ(sch.active(), 1);
  while (sch.busy()) ASSERT_TRUE(sch.run_step(eng));
  EXPECT_EQ(done[1].generated, test::reference_tokens(prompts[1], 1, 8, 4096, {}, false, false, kVocab));
}

// ---------------------------------------------------------------------------------------------
// The paged KV cache: the scheduler hands out the pool's blocks (Row::block). The oracle is a
// fake pool: every row writes (the sequence's identity, its position) into the cell its block
// names, and reads back through its slot's table (built from the rows, as a backend does) every
// position it attends to; a cell holding anything else means a sequence's cache was overwritten
// while it was in use, or a row named a block its sequence does not own.
class FakePool {
 public:
  FakePool(int blocks, int block_tokens, int slots)
      : B_(block_tokens), cells_(static_cast<size_t>(blocks) * block_tokens, {-1, -1}),
        tables_(slots), generation_(slots, 0) {}
  void apply(const std::vector<Row>& rows) {
    for (const Row& r : rows) {  // writes first: a step's rows of one slot read each other's
      ASSERT_GE(r.block, 0);
      ASSERT_LT(static_cast<size_t>(r.block) * B_, cells_.size());
      if (r.flags & Row::kNewSeq) ++generation_[r.slot];
      auto& t = tables_[r.slot];
      const size_t b = static_cast<size_t>(r.pos / B_);
      if (t.size() <= b) t.resize(b + 1, -1);
      t[b] = r.block;
      cells_[static_cast<size_t>(r.block) * B_ + r.pos % B_] = {id(r.slot), r.pos};
    }
    for (const Row& r : rows)
      for (int j = 0; j <= r.pos; ++j) {
        const auto& t = tables_[r.slot];
        const auto cell = cells_[static_cast<size_t>(t[j / B_]) * B_ + j % B_];
        ASSERT_EQ(cell.first, id(r.slot)) << "slot " << r.slot << " position " << j;
        ASSERT_EQ(cell.second, j);
      }
  }

 private:
  int64_t id(int slot) const { return int64_t{generation_[slot]} * 1000 + slot; }
  int B_;
  std::vector<std::pair<int64_t, int>> cells_;
  std::vector<std::vector<int32_t>> tables_;
  std::vector<int> generation_;
};

SchedulerOptions paged(int slots, int chunk, int block_tokens, int blocks, int ctx = 64) {
  SchedulerOptions so = opts(slots, chunk, ctx);
  so.kv_block_tokens = block_tokens;
  so.kv_blocks = blocks;
  return so;
}

TEST(RunSchedulerPaged, EverySequenceKeepsItsCacheAndGetsItsOwnTokens) {
  // Pools from one sequence's worth (ctx 64 in blocks of 4: 16) up to more than all need, so
  // sequences wait for blocks, blocks are reused by later sequences, and tables fragment.
  auto prompts = make_prompts(40);
  for (bool random : {false, true})
    for (int slots : {1, 3, 8, 64})
      for (int chunk : {1, 4, 256})
        for (int blocks : {16, 21, 40, 1000}) {
          SCOPED_TRACE(testing::Message() << "slots " << slots << " chunk " << chunk << " blocks "
                                          << blocks << " random " << random);
          SchedulerOptions so = paged(slots, chunk, 4, blocks);
          FakeEngine eng(kVocab, slots, so.ctx);
          FakePool pool(blocks, 4, slots);
          Scheduler sch(so, test::fake_factory(random));
          std::map<uint64_t, std::vector<int32_t>> got;
          sch.on_finish = [&](Finished&& f) { got[f.id] = f.generated; };
          for (size_t i = 0; i < prompts.size(); ++i) sch.submit(Request{i, prompts[i], 12, 0, -1});
          int guard = 0, most = 0;
          while (sch.busy() && ++guard < 100000) {
            ASSERT_TRUE(sch.run_step(eng));
            pool.apply(eng.steps.back());
            if (testing::Test::HasFatalFailure()) return;
            most = std::max(most, sch.active());
            ASSERT_GE(blocks - sch.kv_blocks_used() - sch.kv_blocks_promised(), 0);
          }
          ASSERT_EQ(got.size(), prompts.size());
          for (size_t i = 0; i < prompts.size(); ++i)
            EXPECT_EQ(got[i], test::reference_tokens(prompts[i], i, 12, so.ctx, {7, 9}, false,
                                                     random, kVocab));
          EXPECT_EQ(sch.kv_blocks_promised(), 0);
          // A sequence needs at most ceil((23 + 12) / 4) = 9 blocks: 16 blocks run one at a time
          // at worst; 1000 never hold anything back, so the steps are those of no paging.
          if (blocks == 1000) {
            const RunResult unpaged = run_all(prompts, opts(slots, chunk, so.ctx), 12, random);
            ASSERT_EQ(unpaged.steps.size(), eng.steps.size());
            for (size_t k = 0; k < eng.steps.size(); ++k) {
              ASSERT_EQ(unpaged.steps[k].size(), eng.steps[k].size());
              for (size_t i = 0; i < eng.steps[k].size(); ++i) {
                const Row &a = unpaged.steps[k][i], &b = eng.steps[k][i];
                ASSERT_TRUE(a.token == b.token && a.slot == b.slot && a.pos == b.pos &&
                            a.flags == b.flags)
                    << "step " << k << " row " << i;
              }
            }
          } else {
            EXPECT_LE(most, blocks / 4);  // each can need >= ceil((1 + 12) / 4) = 4 blocks
          }
        }
}

TEST(RunSchedulerPaged, AdmissionWaitsUntilTheBlocksItCanNeedAreFree) {
  // Each request can need ceil((8 + 8) / 4) = 4 blocks; a pool of 16 (the minimum for ctx 64)
  // runs at most 4 at once although 8 slots are free.
  std::vector<std::vector<int32_t>> prompts(12, std::vector<int32_t>(8, 3));
  SchedulerOptions so = paged(8, 256, 4, 16);
  so.stop_ids = {};
  FakeEngine eng(kVocab, 8, so.ctx);
  Scheduler sch(so, test::fake_factory(false));
  int finished = 0, most = 0;
  sch.on_finish = [&](Finished&&) { ++finished; };
  for (size_t i = 0; i < prompts.size(); ++i) sch.submit(Request{i, prompts[i], 8, 0, -1});
  while (sch.busy()) {
    sch.run_step(eng);
    most = std::max(most, sch.active());
    EXPECT_LE(sch.kv_blocks_used() + sch.kv_blocks_promised(), 16);
  }
  EXPECT_EQ(finished, 12);
  EXPECT_EQ(most, 4);
}

TEST(RunSchedulerPaged, AChatTurnContinuesInTheBlocksItsSlotHolds) {
  FakeEngine eng(kVocab, 1, 64);
  SchedulerOptions so = paged(1, 4, 4, 16);
  so.stop_ids = {};
  Scheduler sch(so, test::fake_factory(false));
  FakePool pool(16, 4, 1);
  Finished f1, f2;
  sch.on_finish = [&](Finished&& f) { (f.id == 0 ? f1 : f2) = std::move(f); };
  std::vector<int32_t> t1{1, 2, 3, 4, 5}, t2{4, 5};
  sch.submit(Request{0, t1, 6, 0, 0});
  while (sch.busy()) {
    sch.run_step(eng);
    pool.apply(eng.steps.back());
  }
  const std::vector<int32_t> held = sch.kv_blocks_of(0);  // positions 0..9: 3 blocks
  ASSERT_EQ(held.size(), 3u);
  std::vector<int32_t> feed2{f1.generated.back()};
  feed2.insert(feed2.end(), t2.begin(), t2.end());
  sch.submit(Request{1, feed2, 4, f1.end_pos, 0});
  while (sch.busy()) {
    sch.run_step(eng);
    pool.apply(eng.steps.back());  // reads turn 1's positions through the same blocks
  }
  ASSERT_FALSE(testing::Test::HasFailure());
  const std::vector<int32_t>& after = sch.kv_blocks_of(0);
  ASSERT_GE(after.size(), held.size());
  EXPECT_TRUE(std::equal(held.begin(), held.end(), after.begin()));
  std::vector<int32_t> history = t1;
  history.insert(history.end(), f1.generated.begin(), f1.generated.end());
  history.insert(history.end(), t2.begin(), t2.end());
  EXPECT_EQ(f2.generated, test::reference_tokens(history, 1, 4, 64, {}, false, false, kVocab));
}

TEST(RunSchedulerPaged, AContinuationWhoseBlocksWereReclaimedIsAnError) {
  // Slot 0's finished sequence holds 12 blocks; a new sequence in slot 1 needs 16 of the 16: it
  // takes them back, and slot 0 can no longer be continued.
  FakeEngine eng(kVocab, 2, 64);
  SchedulerOptions so = paged(2, 64, 4, 16);
  so.stop_ids = {};
  Scheduler sch(so, test::fake_factory(false));
  Finished f0;
  sch.on_finish = [&](Finished&& f) { if (f.id == 0) f0 = std::move(f); };
  sch.submit(Request{0, std::vector<int32_t>(40, 2), 8, 0, 0});
  while (sch.busy()) sch.run_step(eng);
  EXPECT_EQ(sch.kv_blocks_of(0).size(), 12u);
  sch.submit(Request{1, std::vector<int32_t>(50, 2), 14, 0, 1});
  while (sch.busy()) sch.run_step(eng);
  EXPECT_TRUE(sch.kv_blocks_of(0).empty());
  sch.submit(Request{2, {f0.generated.back()}, 4, f0.end_pos, 0});
  try {
    sch.run_step(eng);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("its KV blocks were given to other sequences"),
              std::string::npos)
        << e.what();
  }
}

TEST(RunSchedulerPaged, APoolSmallerThanOneSequenceIsRefused) {
  EXPECT_THROW(Scheduler(paged(4, 16, 4, 15), test::fake_factory(false)), Error);
  EXPECT_NO_THROW(Scheduler(paged(4, 16, 4, 16), test::fake_factory(false)));
}

}  // namespace
}  // namespace gptoss
