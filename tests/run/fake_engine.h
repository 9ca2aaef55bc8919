// fake_engine.h: a deterministic stand-in for the Engine in the run tests. It checks the engine
// contract on every row (slots in range, kNewSeq exactly at pos 0, positions consecutive per slot,
// pos < ctx) and makes logits that depend only on the slot's token history, so a correct
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

class FakeEngine : public Engine {
 public:
  FakeEngine(int vocab, int slots, int ctx) : ctx_(ctx), slots_(slots), hist_(slots) {
    cfg_.vocab = vocab;
    cfg_.max_context = 131072;
  }
  const Config& config() const override { return cfg_; }
  int ctx() const override { return ctx_; }
  int max_slots() const override { return slots_; }
  size_t kv_cache_bytes() const override { return 0; }
  void forward(std::span<const Row> rows, std::vector<float>& logits) override {
    steps.emplace_back(rows.begin(), rows.end());
    size_t n_logits = 0;
    for (const Row& r : rows) n_logits += (r.flags & Row::kLogits) ? 1 : 0;
    logits.assign(n_logits * static_cast<size_t>(cfg_.vocab), 0.0f);
    size_t li = 0;
    for (const Row& r : rows) {
      if (r.slot < 0 || r.slot >= slots_) throw std::runtime_error("slot out of range");
      auto& h = hist_[r.slot];
      if (r.flags & Row::kNewSeq) {
        if (r.pos != 0) throw std::runtime_error("kNewSeq at pos != 0");
        h.clear();
      } else if (r.pos == 0) {
        throw std::runtime_error("pos 0 without kNewSeq");
      }
      if (r.pos != static_cast<int>(h.size()))
        throw std::runtime_error("non-consecutive pos " + std::to_string(r.pos) + " in slot " +
                                 std::to_string(r.slot) + " holding " + std::to_string(h.size()));
      if (r.pos >= ctx_) throw std::runtime_error("pos beyond ctx");
      h.push_back(r.token);
      if (r.flags & Row::kLogits) fake_logits(h, cfg_.vocab, logits.data() + (li++) * cfg_.vocab);
    }
  }
  std::vector<std::vector<Row>> steps;  // every step's rows

 private:
  Config cfg_;
  int ctx_, slots_;
  std::vector<std::vector<int32_t>> hist_;  // [slot] tokens in the "KV cache"
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
