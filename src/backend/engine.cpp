// engine.cpp: the CPU Engine: validates each step's rows, tracks sequence lengths per slot, and
// runs CpuModel's stages (embed, all layers, head) over them.
#include <omp.h>

#include <algorithm>
#include <vector>

#include "common/error.h"
#include "backend_cpu/cpu_model.h"
#include "backend/engine.h"
#include "backend/sampler.h"
#include "model/model_file.h"

namespace gptoss {
namespace {

class CpuEngine final : public Engine {
 public:
  CpuEngine(const ModelWeights& w, const EngineOptions& opt)
      : model_(w, opt.ctx, opt.max_slots, 0, w.config.n_layers), slot_len_(opt.max_slots, 0) {}

  const Config& config() const override { return model_.config(); }
  int ctx() const override { return model_.ctx(); }
  int max_slots() const override { return model_.max_slots(); }
  size_t kv_cache_bytes() const override { return model_.kv_cache_bytes(); }

  void forward(std::span<const Row> rows, std::vector<float>& logits) override {
    const Config& c = model_.config();
    const int n = static_cast<int>(rows.size());
    // Validate everything before any state changes.
    std::vector<int32_t> len = slot_len_;
    std::vector<int32_t> tokens(n);
    std::vector<RowPos> pos(n);
    std::vector<int32_t> want;
    std::vector<uint8_t> seen(model_.max_slots(), 0);
    for (int i = 0; i < n; ++i) {
      const Row& r = rows[i];
      if (r.slot < 0 || r.slot >= model_.max_slots())
        fail("forward: row %d: slot %d out of range [0, %d)", i, r.slot, model_.max_slots());
      if (r.pos < 0 || r.pos >= model_.ctx())
        fail("forward: row %d (slot %d): position %d out of range [0, %d) (context length)", i,
             r.slot, r.pos, model_.ctx());
      if (r.token < 0 || r.token >= c.vocab)
        fail("forward: row %d (slot %d): token %d out of range [0, %d)", i, r.slot, r.token,
             c.vocab);
      if ((r.flags & Row::kNewSeq) && r.pos != 0)
        fail("forward: row %d (slot %d): new sequence must start at position 0, got %d", i,
             r.slot, r.pos);
      if (r.pos == 0 && seen[r.slot])
        fail("forward: row %d (slot %d): a sequence cannot restart at position 0 after other rows "
             "of the same slot in one step",
             i, r.slot);
      seen[r.slot] = 1;
      if (r.pos != 0 && r.pos != len[r.slot])
        fail("forward: row %d (slot %d): position %d does not continue the sequence (next "
             "position is %d)",
             i, r.slot, r.pos, len[r.slot]);
      len[r.slot] = r.pos + 1;
      tokens[i] = r.token;
      pos[i] = RowPos{r.slot, r.pos};
      if (r.flags & Row::kLogits) want.push_back(i);
    }
    const size_t H = c.hidden;
    x_.resize(n * H);
    model_.embed(tokens, x_.data());
    model_.run_layers(0, c.n_layers, pos, x_.data());
    slot_len_ = len;
    xl_.resize(want.size() * H);
    for (size_t j = 0; j < want.size(); ++j)
      std::copy_n(x_.data() + want[j] * H, H, xl_.data() + j * H);
    logits.resize(want.size() * static_cast<size_t>(c.vocab));
    model_.head(xl_.data(), static_cast<int>(want.size()), logits.data());
  }

 private:
  CpuModel model_;
  std::vector<int32_t> slot_len_;  // [max_slots] positions filled
  std::vector<float> x_, xl_;      // [rows, H], [rows with logits, H]
};

}  // namespace

std::unique_ptr<Engine> make_cpu_engine(const ModelWeights& w, const EngineOptions& opt) {
  if (!opt.kv_cache.empty() && opt.kv_cache != "f32")
    fail("--kv-cache %s: the CPU engine keeps its KV cache in f32 only", opt.kv_cache.c_str());
  if (opt.threads < 0) fail("threads %d: must be >= 0 (0 = OpenMP default)", opt.threads);
  if (opt.threads > 0) omp_set_num_threads(opt.threads);
  return std::make_unique<CpuEngine>(w, opt);
}

std::unique_ptr<Engine> make_cpu_engine(const ModelFile& model, const EngineOptions& opt) {
  return make_cpu_engine(model_weights(model), opt);
}

void Engine::forward_pick(std::span<const Row> rows, std::span<const TokenPick> picks,
                          std::vector<int32_t>& tokens) {
  size_t want = 0;
  for (const Row& r : rows) want += (r.flags & Row::kLogits) ? 1 : 0;
  if (picks.size() != want)
    fail("forward_pick: %zu picks for %zu rows with logits", picks.size(), want);
  std::vector<float> logits;
  forward(rows, logits);
  const size_t V = static_cast<size_t>(config().vocab);
  tokens.resize(picks.size());
  for (size_t i = 0; i < picks.size(); ++i)
    tokens[i] = Sampler::pick(logits.data() + i * V, static_cast<int>(V), picks[i]);
}

}  // namespace gptoss
