// engine.cpp: the Engine (engine.h): SequenceCheck, then the backend's run and head per pass.
#include "backend/engine.h"

#include <algorithm>

#include "common/error.h"

namespace gptoss {

Engine::Engine(std::unique_ptr<Backend> b)
    : b_(std::move(b)), check_(b_->max_slots(), b_->ctx(), b_->config().vocab) {
  if (b_->first_layer() != 0 || b_->last_layer() != b_->config().n_layers || !b_->has_ends())
    fail("engine: the backend holds layers [%d, %d)%s; an engine needs all %d layers and the "
         "embedding and head",
         b_->first_layer(), b_->last_layer(), b_->has_ends() ? "" : " without the ends",
         b_->config().n_layers);
}

template <class Done>
void Engine::run_passes(std::span<const Row> rows, Done&& done) {
  if (b_->pages_kv()) {  // before anything is recorded or enqueued (the backend checks again)
    const int blocks = b_->kv_pool_blocks();
    for (size_t i = 0; i < rows.size(); ++i)
      if (rows[i].block < 0 || rows[i].block >= blocks)
        fail("forward: row %zu (slot %d position %d) names block %d; the pool has blocks [0, %d)",
             i, rows[i].slot, rows[i].pos, rows[i].block, blocks);
  }
  check_.apply(rows, "forward:");
  const int pass = b_->max_rows_per_pass(), seq_pass = b_->max_seq_rows_per_pass();
  size_t before = 0;
  for (size_t r0 = 0, r1; r0 < rows.size(); r0 = r1) {
    r1 = pass_end(r0, rows.size(), pass, seq_pass, [&](size_t i) { return rows[i].slot; });
    const size_t n = r1 - r0;
    tokens_.resize(n);
    pos_.resize(n);
    logit_rows_.clear();
    for (size_t i = 0; i < n; ++i) {
      const Row& r = rows[r0 + i];
      tokens_[i] = r.token;
      pos_[i] = RowPos{r.slot, r.pos, r.block};
      if (r.flags & Row::kLogits) logit_rows_.push_back(static_cast<int32_t>(i));
    }
    b_->run(tokens_, pos_, nullptr, nullptr);
    done(std::span<const int32_t>(logit_rows_), before);
    before += logit_rows_.size();
  }
}

void Engine::forward(std::span<const Row> rows, std::vector<float>& logits) {
  const size_t V = static_cast<size_t>(config().vocab);
  size_t n_logits = 0;
  for (const Row& r : rows) n_logits += (r.flags & Row::kLogits) ? 1 : 0;
  logits.resize(n_logits * V);
  run_passes(rows, [&](std::span<const int32_t> lr, size_t before) {
    if (!lr.empty()) b_->head(nullptr, lr, logits.data() + before * V);
  });
}

void Engine::forward_pick(std::span<const Row> rows, std::span<const TokenPick> picks,
                          std::vector<int32_t>& tokens) {
  size_t n_logits = 0;
  for (const Row& r : rows) n_logits += (r.flags & Row::kLogits) ? 1 : 0;
  if (picks.size() != n_logits)
    fail("forward_pick: %zu picks for %zu rows with logits", picks.size(), n_logits);
  tokens.resize(n_logits);
  run_passes(rows, [&](std::span<const int32_t> lr, size_t before) {
    if (lr.empty()) return;
    b_->head_pick(nullptr, lr, picks.subspan(before, lr.size()), picked_);
    std::copy(picked_.begin(), picked_.end(), tokens.begin() + static_cast<std::ptrdiff_t>(before));
  });
}

}  // namespace gptoss
