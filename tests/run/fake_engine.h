// fake_engine.h: a deterministic stand-in backend for the Engine in the run tests. It checks the
// rows it is given (slots in range, positions consecutive per slot, pos < ctx; the Engine's
// SequenceCheck checks them first) and makes logits that depend only on the slot's token
// history, so a correct
// scheduler gives each sequence the same tokens whatever the batching. Also the reference: the
// tokens a sequence should get when run alone, token by token.
#pragma once
#include <algorithm>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "backend/engine.h"
#include "sched/scheduler.h"

namespace gptoss::test {

// Next-token target of a history: FNV-1a of the ids, modulo vocab.
inline int32_t fake_target(const std::vector<int32_t>& h, int vocab) {
  uint64_t x = 0xcbf29ce484222325ull;
  for (int32_t t : h) x = (x ^ static_cast<uint64_t>(t)) * 0x100000001b3ull;
  x ^= x >> 29;
  return static_cast<int32_t>(x % static_cast<uint64_t>(vocab));
}

// logits row [vocab]: target 2.0, target+1 1.0, the rest 0.
inline void fake_logits(const std::vector<int32_t>& h, int vocab, float* out) {
  int32_t t = fake_target(h, vocab);
  for (int j = 0; j < vocab; ++j) out[j] = 0.0f;
  out[t] = 2.0f;
  out[(t + 1) % vocab] = 1.0f;
}

// The backend behind FakeEngine: one "layer", hidden size 2 (a row's hidden state is its slot and
// position), a per-slot token history as its "KV cache", logits from fake_logits of the history.
// It records every step's rows (kNewSeq for pos 0, kLogits for the rows the head was asked for).
// picking: it claims to choose tokens on its device (the scheduler then hands it TokenPicks) and
// counts those steps.
class FakeBackend final : public Backend {
 public:
  FakeBackend(int vocab, int slots, int ctx, bool picking)
      : ctx_(ctx), slots_(slots), picking_(picking), hist_(static_cast<size_t>(slots)) {
    cfg_.vocab = vocab;
    cfg_.hidden = 2;
    cfg_.n_layers = 1;
    cfg_.max_context = 131072;
  }
  const Config& config() const override { return cfg_; }
  int first_layer() const override { return 0; }
  int last_layer() const override { return 1; }
  bool has_ends() const override { return true; }
  int ctx() const override { return ctx_; }
  int max_slots() const override { return slots_; }
  size_t kv_cache_bytes() const override { return 0; }
  int max_rows_per_pass() const override { return pass_rows; }
  int max_seq_rows_per_pass() const override { return pass_seq_rows; }
  void run(std::span<const int32_t> tokens, std::span<const RowPos> rows, const float* in,
           float* out) override {
    if (tokens.size() != rows.size() || in) throw std::runtime_error("fake: tokens expected");
    if (!out) {
      own_.resize(rows.size() * 2);
      out = own_.data();
    }
    auto& step = steps.emplace_back();
    for (size_t i = 0; i < rows.size(); ++i) {
      const RowPos& r = rows[i];
      if (r.slot < 0 || r.slot >= slots_) throw std::runtime_error("slot out of range");
      auto& h = hist_[static_cast<size_t>(r.slot)];
      if (r.pos == 0) h.clear();
      if (r.pos != static_cast<int>(h.size()))
        throw std::runtime_error("non-consecutive pos " + std::to_string(r.pos) + " in slot " +
                                 std::to_string(r.slot) + " holding " + std::to_string(h.size()));
      if (r.pos >= ctx_) throw std::runtime_error("pos beyond ctx");
      h.push_back(tokens[i]);
      out[2 * i] = static_cast<float>(r.slot);
      out[2 * i + 1] = static_cast<float>(r.pos);
      step.push_back(Row{tokens[i], r.slot, r.pos, r.pos == 0 ? uint32_t(Row::kNewSeq) : 0u, r.block});
    }
  }
  void head(const float* x, std::span<const int32_t> logit_rows, float* logits) override {
    if (!x) x = own_.data();
    std::vector<int32_t> prefix;
    for (size_t i = 0; i < logit_rows.size(); ++i) {
      const int r = logit_rows[i];
      const auto slot = static_cast<size_t>(x[2 * r]);
      const auto pos = static_cast<size_t>(x[2 * r + 1]);
      prefix.assign(hist_[slot].begin(), hist_[slot].begin() + static_cast<std::ptrdiff_t>(pos + 1));
      fake_logits(prefix, cfg_.vocab, logits + i * static_cast<size_t>(cfg_.vocab));
      steps.back()[static_cast<size_t>(r)].flags |= Row::kLogits;
    }
  }
  bool picks_on_device() const override { return picking_; }
  void head_pick(const float* x, std::span<const int32_t> logit_rows,
                 std::span<const TokenPick> picks, std::vector<int32_t>& tokens) override {
    ++pick_steps;
    for (const TokenPick& p : picks) used_draw |= p.u != 0.0;
    Backend::head_pick(x, logit_rows, picks, tokens);
  }
  std::vector<std::vector<Row>> steps;  // every step's rows
  int pass_rows = 1 << 30, pass_seq_rows = 1 << 30;  // max_rows_per_pass, max_seq_rows_per_pass
  int pick_steps = 0;
  bool used_draw = false;

 private:
  Config cfg_;
  int ctx_, slots_;
  bool picking_;
  std::vector<std::vector<int32_t>> hist_;  // [slot] tokens in the "KV cache"
  std::vector<float> own_;                  // [rows, 2]
};

// An Engine over a FakeBackend; steps, pick_steps and used_draw are the backend's.
class FakeEngine : public Engine {
 public:
  FakeEngine(int vocab, int slots, int ctx, bool picking = false)
      : Engine(std::make_unique<FakeBackend>(vocab, slots, ctx, picking)),
        fake(static_cast<FakeBackend&>(backend())), steps(fake.steps) {}
  FakeBackend& fake;
  std::vector<std::vector<Row>>& steps;
};

// Greedy (argmax, lowest id on ties), or a per-request pseudo-random pick between the two best.
class FakeChooser : public TokenChooser {
 public:
  FakeChooser(bool random, uint64_t id) : random_(random), state_(id * 0x9E3779B97F4A7C15ull + 1) {}
  int32_t choose(const float* logits, int vocab) override {
    int best = 0;
    for (int j = 1; j < vocab; ++j)
      if (logits[j] > logits[best]) best = j;
    if (!random_) return best;
    state_ = state_ * 6364136223846793005ull + 1442695040888963407ull;
    return (state_ >> 62) & 1 ? (best + 1) % vocab : best;
  }

 private:
  bool random_;
  uint64_t state_;
};

inline ChooserFactory fake_factory(bool random) {
  return [random](uint64_t id) { return std::make_unique<FakeChooser>(random, id); };
}

// What request `id` must generate when run alone (the oracle the scheduler is checked against).
inline std::vector<int32_t> reference_tokens(std::vector<int32_t> h, uint64_t id, int max_new,
                                             int ctx, const std::vector<int32_t>& stops,
                                             bool ignore_eos, bool random, int vocab,
                                             FinishReason* why = nullptr) {
  FakeChooser ch(random, id);
  std::vector<int32_t> gen;
  std::vector<float> lg(static_cast<size_t>(vocab));
  for (;;) {
    fake_logits(h, vocab, lg.data());
    int32_t t = ch.choose(lg.data(), vocab);
    gen.push_back(t);
    bool stop = !ignore_eos && std::find(stops.begin(), stops.end(), t) != stops.end();
    FinishReason r = FinishReason::Stop;
    if (!stop) {
      if (static_cast<int>(gen.size()) >= max_new) r = FinishReason::MaxTokens;
      else if (static_cast<int>(h.size()) + 1 >= ctx) r = FinishReason::Context;
      else {
        h.push_back(t);
        continue;
      }
    }
    if (why) *why = r;
    return gen;
  }
}

}  // namespace gptoss::test
