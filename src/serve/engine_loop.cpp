// engine_loop.cpp: the server's engine thread (see engine_loop.h).
#include "serve/engine_loop.h"

#include <chrono>

#include "common/error.h"

namespace gptoss::serve {

namespace {
double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}
}  // namespace

EngineLoop::EngineLoop(Inbox& inbox, Metrics& metrics,
                       std::function<uint64_t(uint64_t)> default_seed, Elsewhere* elsewhere)
    : inbox_(inbox), metrics_(metrics), default_seed_(std::move(default_seed)),
      elsewhere_(elsewhere) {}

ChooserFactory EngineLoop::chooser_factory() {
  return [this](uint64_t id) -> std::unique_ptr<TokenChooser> {
    auto it = params_.find(id);
    GPTOSS_ASSERT(it != params_.end());
    return std::make_unique<SamplerChooser>(it->second);
  };
}

void EngineLoop::update_gauges(Scheduler& sch) {
  const int away = elsewhere_ ? static_cast<int>(elsewhere_->outstanding()) : 0;
  metrics_.set_queue(static_cast<int>(sch.queued() + inbox_.pending()), sch.active() + away);
  metrics_.set_kv(sch.kv_blocks_total(), sch.kv_blocks_used(), sch.kv_blocks_promised());
}

bool EngineLoop::busy(const Scheduler& sch) const {
  return sch.busy() || (elsewhere_ && elsewhere_->outstanding() > 0);
}

void EngineLoop::token(uint64_t id, int32_t t) {
  auto it = streams_.find(id);
  if (it != streams_.end()) it->second->push(t);
}

void EngineLoop::finished(Finished&& f) {
  auto it = streams_.find(f.id);
  if (it != streams_.end()) {
    it->second->finish(f.reason == FinishReason::Stop        ? EndKind::Stop
                       : f.reason == FinishReason::Cancelled ? EndKind::Cancelled
                                                             : EndKind::Length);
    streams_.erase(it);
  }
  params_.erase(f.id);
}

// Jobs and cancellations from the HTTP threads; a job that arrives while closing is refused.
void EngineLoop::admit(Scheduler& sch) {
  jobs_.clear();
  cancels_.clear();
  inbox_.take(jobs_, cancels_);
  for (Job& j : jobs_) {
    if (closing_) {
      j.out->finish(EndKind::Cancelled);
      continue;
    }
    SamplerParams p;
    p.temperature = j.temperature;
    p.top_p = j.top_p;
    p.top_k = j.top_k;
    p.seed = j.seed ? *j.seed : default_seed_(j.id);
    try {
      const int ring =
          elsewhere_ ? elsewhere_->place(sch.active() + static_cast<int>(sch.queued())) : 0;
      streams_[j.id] = j.out;
      const size_t n = j.prompt.size();
      if (ring > 0) {
        elsewhere_->submit(ring, Request{j.id, std::move(j.prompt), j.max_tokens, 0, -1}, p);
      } else {
        params_[j.id] = p;
        sch.submit(Request{j.id, std::move(j.prompt), j.max_tokens, 0, -1});
      }
      metrics_.add_prompt_tokens(n);
    } catch (const Error&) {  // the HTTP side checked the limits; never leave a client waiting
      params_.erase(j.id);
      streams_.erase(j.id);
      j.out->finish(EndKind::Cancelled);
    }
  }
  for (uint64_t id : cancels_)
    if (!elsewhere_ || !elsewhere_->cancel(id)) sch.cancel(id);
  // What the other rings made: their tokens count as generated here when they arrive.
  if (elsewhere_) {
    uint64_t n = 0;
    elsewhere_->poll([&](uint64_t id, int32_t t) { token(id, t); ++n; },
                     [&](Finished&& f) { finished(std::move(f)); });
    if (n) metrics_.add_generated_tokens(n, now_s());
  }
  update_gauges(sch);
}

size_t EngineLoop::run(Scheduler& sch, const RunScheduler& run_scheduler,
                       const std::function<int()>& stop_level, double grace_s) {
  sch.on_token = [&](uint64_t id, int32_t t) { token(id, t); };
  sch.on_finish = [&](Finished&& f) { finished(std::move(f)); };
  uint64_t generated_seen = sch.stats().generated;
  auto after_commit = [&] {
    const uint64_t g = sch.stats().generated;
    metrics_.add_generated_tokens(g - generated_seen, now_s());
    generated_seen = g;
    update_gauges(sch);
  };
  auto before_plan = [&] { admit(sch); };
  int level_seen = 0;
  double deadline = 0;
  bool cut = false;
  size_t n_cut = 0;
  for (;;) {
    const int level = stop_level();
    if (level >= 1 && !closing_) {
      closing_ = true;
      inbox_.close();
      deadline = now_s() + grace_s;
    }
    level_seen = level;
    admit(sch);
    if (closing_ && !cut && (level >= 2 || now_s() >= deadline)) {
      cut = true;
      std::vector<uint64_t> ids;
      for (const auto& [id, s] : streams_) ids.push_back(id);
      for (uint64_t id : ids) sch.cancel(id);
      n_cut = ids.size();
    }
    if (!sch.busy()) {
      if (closing_ && !busy(sch)) break;
      // Only other rings at work: back soon for their tokens.
      inbox_.wait(std::chrono::milliseconds(busy(sch) ? 1 : 100));
      continue;
    }
    // Back to this loop when the stop level rises or the grace ends (to cut what still runs).
    auto should_stop = [&] {
      return stop_level() != level_seen || (closing_ && !cut && now_s() >= deadline);
    };
    run_scheduler(sch, should_stop, after_commit, before_plan);
  }
  update_gauges(sch);
  return n_cut;
}

}  // namespace gptoss::serve
