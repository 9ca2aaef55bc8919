// scheduler.cpp: continuous batching (see scheduler.h for the contract).
#include "sched/scheduler.h"

#include <algorithm>

#include "common/error.h"

namespace gptoss {

const char* finish_reason_name(FinishReason r) {
  switch (r) {
    case FinishReason::Stop: return "stop token";
    case FinishReason::MaxTokens: return "max new tokens";
    case FinishReason::Context: return "context full";
    case FinishReason::Cancelled: return "interrupted";
  }
  return "?";
}

Scheduler::Scheduler(const SchedulerOptions& opt, ChooserFactory chooser)
    : opt_(opt),
      make_chooser_(std::move(chooser)),
      slots_(static_cast<size_t>(opt.max_slots)),
      held_(static_cast<size_t>(opt.max_slots)),
      idle_since_(static_cast<size_t>(opt.max_slots), 0) {
  GPTOSS_ASSERT(opt.max_slots >= 1 && opt.chunk_tokens >= 1 && opt.ctx >= 2);
  if (opt_.kv_block_tokens > 0) {
    const int64_t per_seq = (static_cast<int64_t>(opt_.ctx) + opt_.kv_block_tokens - 1) / opt_.kv_block_tokens;
    if (opt_.kv_blocks < per_seq)
      fail("KV cache of %d blocks of %d positions holds less than one sequence of -c %d",
           opt_.kv_blocks, opt_.kv_block_tokens, opt_.ctx);
    free_blocks_.resize(static_cast<size_t>(opt_.kv_blocks));
    for (int i = 0; i < opt_.kv_blocks; ++i) free_blocks_[i] = opt_.kv_blocks - 1 - i;
  } else {
    opt_.kv_blocks = 0;
  }
}

void Scheduler::submit(Request r) {
  if (r.tokens.empty()) fail("request %llu: no tokens to feed", (unsigned long long)r.id);
  if (r.max_new < 1) fail("request %llu: max_new must be >= 1", (unsigned long long)r.id);
  if (r.start_pos < 0 || (r.start_pos > 0 && (r.slot < 0 || r.slot >= opt_.max_slots)))
    fail("request %llu: a continuation needs a valid slot", (unsigned long long)r.id);
  if (static_cast<int64_t>(r.start_pos) + static_cast<int64_t>(r.tokens.size()) + 1 > opt_.ctx)
    fail("request %llu: %zu tokens after %d do not fit the context of %d (one position must be "
         "left to generate)",
         (unsigned long long)r.id, r.tokens.size(), r.start_pos, opt_.ctx);
  queue_.push_back(std::move(r));
}

bool Scheduler::is_stop(int32_t t) const {
  if (opt_.ignore_eos) return false;
  return std::find(opt_.stop_ids.begin(), opt_.stop_ids.end(), t) != opt_.stop_ids.end();
}

bool Scheduler::admit_one() {
  if (queue_.empty()) return false;
  Request& r = queue_.front();
  int slot = r.slot;
  if (slot >= 0) {
    if (slots_[slot].active) return false;  // FIFO: wait for that slot
  } else {
    // A free slot that holds no KV blocks, else the one idle longest (its blocks go back).
    for (int s = 0; s < opt_.max_slots; ++s) {
      if (slots_[s].active) continue;
      if (held_[s].empty()) { slot = s; break; }
      if (slot < 0 || idle_since_[s] < idle_since_[slot]) slot = s;
    }
    if (slot < 0) return false;
  }
  int promise = 0;
  if (opt_.kv_block_tokens > 0) {
    const int B = opt_.kv_block_tokens;
    const int64_t end = std::min<int64_t>(
        opt_.ctx, static_cast<int64_t>(r.start_pos) + static_cast<int64_t>(r.tokens.size()) + r.max_new);
    const int need = static_cast<int>((end + B - 1) / B);
    // A continuation keeps what its slot holds; a new sequence gives the slot's blocks back.
    const int have = r.start_pos > 0 ? static_cast<int>(held_[slot].size()) : 0;
    if (r.start_pos > 0 && have < (r.start_pos + B - 1) / B)
      fail("request %llu: continues slot %d at position %d, but its KV blocks were given to "
           "other sequences",
           (unsigned long long)r.id, slot, r.start_pos);
    if (r.start_pos == 0) release_blocks(slot);
    if (!make_room(need - have, slot)) return false;  // FIFO: wait for blocks
    promise = need - have;
    promised_ += promise;
  }
  Seq& q = slots_[slot];
  q = Seq{};
  q.promised = promise;
  q.active = true;
  q.id = r.id;
  q.admitted = admitted_count_++;
  q.pos = r.start_pos;
  q.new_seq = r.start_pos == 0;
  q.prompt_len = r.tokens.size();
  q.feed = std::move(r.tokens);
  q.max_new = r.max_new;
  q.chooser = make_chooser_(r.id);
  ++active_;
  queue_.pop_front();
  return true;
}

bool Scheduler::plan(Step& step) { return plan(step, PlanLimits{}); }

bool Scheduler::plan(Step& step, const PlanLimits& limits) {
  step.rows.clear();
  step.logit_slots.clear();
  while (admit_one()) {
  }
  const int chunk = limits.token_budget > 0 ? limits.token_budget : opt_.chunk_tokens;
  int decode_left = limits.max_decode_rows > 0 ? limits.max_decode_rows : opt_.max_slots;
  int budget = chunk;
  auto emit = [&](int slot, Seq& q, size_t n) {
    for (size_t k = 0; k < n; ++k) {
      Row row;
      row.token = q.feed[q.next];
      row.slot = slot;
      row.pos = q.pos;
      if (opt_.kv_block_tokens > 0) {
        std::vector<int32_t>& held = held_[slot];
        const size_t b = static_cast<size_t>(q.pos / opt_.kv_block_tokens);
        if (b == held.size()) {  // the first position of a new block: take one promised to it
          GPTOSS_ASSERT(q.promised > 0 && !free_blocks_.empty());
          held.push_back(free_blocks_.back());
          free_blocks_.pop_back();
          --q.promised;
          --promised_;
        }
        GPTOSS_ASSERT(b < held.size());
        row.block = held[b];
      }
      if (q.new_seq) { row.flags |= Row::kNewSeq; q.new_seq = false; }
      if (q.next < q.prompt_len) ++stats_.prompt_rows; else ++stats_.decode_rows;
      ++q.next;
      ++q.pos;
      if (q.next == q.feed.size()) {
        row.flags |= Row::kLogits;
        step.logit_slots.push_back(slot);
      }
      step.rows.push_back(row);
    }
    ++q.inflight;
    budget -= static_cast<int>(n);
  };
  // Decode rows first: one pending token, any budget.
  for (int s = 0; s < opt_.max_slots; ++s) {
    Seq& q = slots_[s];
    const bool free = !q.inflight || (limits.fifo_prefill && q.next < q.prompt_len);
    if (decode_left > 0 && q.active && !q.cancelled && free && q.feed.size() - q.next == 1) {
      emit(s, q, 1);
      --decode_left;
    }
  }
  // Prompt chunks in admission order, within what is left of the budget; at least chunk/8 (>= 1)
  // tokens so prefill is never starved when decode rows alone fill the budget (-b > --chunk).
  budget = std::max(budget, std::max(1, chunk / 8));
  std::vector<int> prefill;
  for (int s = 0; s < opt_.max_slots; ++s) {
    Seq& q = slots_[s];
    if (!q.active || q.cancelled || q.feed.size() - q.next <= 1) continue;
    // In flight: only a FIFO engine may take more of its prompt (never a generated token).
    if (q.inflight && !(limits.fifo_prefill && q.next < q.prompt_len)) continue;
    prefill.push_back(s);
  }
  std::sort(prefill.begin(), prefill.end(),
            [&](int a, int b) { return slots_[a].admitted < slots_[b].admitted; });
  for (int s : prefill) {
    if (budget <= 0) break;
    Seq& q = slots_[s];
    size_t n = std::min(q.feed.size() - q.next, static_cast<size_t>(budget));
    if (opt_.seq_chunk > 0) n = std::min(n, static_cast<size_t>(opt_.seq_chunk));
    emit(s, q, n);
  }
  if (step.rows.empty()) return false;
  ++stats_.steps;
  return true;
}

void Scheduler::commit(const Step& step, std::span<const float> logits, int vocab) {
  GPTOSS_ASSERT(logits.size() == step.logit_slots.size() * static_cast<size_t>(vocab));
  tokens_.resize(step.logit_slots.size());
  for (size_t i = 0; i < step.logit_slots.size(); ++i) {
    Seq& q = slots_[step.logit_slots[i]];
    GPTOSS_ASSERT(q.active && q.next == q.feed.size());
    tokens_[i] = q.chooser->choose(logits.data() + i * static_cast<size_t>(vocab), vocab);
  }
  commit_tokens(step, tokens_);  // commit_tokens never touches tokens_
}

void Scheduler::commit_tokens(const Step& step, std::span<const int32_t> tokens) {
  GPTOSS_ASSERT(tokens.size() == step.logit_slots.size());
  // A step holds the rows of a sequence as one contiguous run: one decrement per run. A cancelled
  // sequence whose last rows in flight came back is freed after the tokens are reported.
  cancelled_done_.clear();
  for (size_t i = 0; i < step.rows.size(); ++i) {
    const int slot = step.rows[i].slot;
    if (i + 1 < step.rows.size() && step.rows[i + 1].slot == slot) continue;
    Seq& q = slots_[slot];
    if (q.inflight > 0) --q.inflight;
    if (q.active && q.cancelled && q.inflight == 0) cancelled_done_.push_back(slot);
  }
  for (size_t i = 0; i < step.logit_slots.size(); ++i) {
    int slot = step.logit_slots[i];
    Seq& q = slots_[slot];
    GPTOSS_ASSERT(q.active && q.next == q.feed.size());
    if (q.cancelled) continue;  // its token is dropped
    const int32_t t = tokens[i];
    q.generated.push_back(t);
    ++stats_.generated;
    if (on_token) on_token(q.id, t);
    bool done = true;
    FinishReason why = FinishReason::MaxTokens;
    if (is_stop(t)) why = FinishReason::Stop;
    else if (static_cast<int>(q.generated.size()) >= q.max_new) why = FinishReason::MaxTokens;
    else if (q.pos + 1 >= opt_.ctx) why = FinishReason::Context;  // prompt + generated == ctx
    else done = false;
    if (!done) {
      q.feed.push_back(t);
      continue;
    }
    finish_seq(slot, why);
  }
  for (int slot : cancelled_done_) finish_seq(slot, FinishReason::Cancelled);
}

void Scheduler::finish_seq(int slot, FinishReason why) {
  Seq& q = slots_[slot];
  Finished f;
  f.id = q.id;
  f.slot = slot;
  f.end_pos = q.pos;
  f.generated = std::move(q.generated);
  f.reason = why;
  promised_ -= q.promised;
  idle_since_[slot] = ++finished_count_;
  q = Seq{};
  --active_;
  if (on_finish) on_finish(std::move(f));
}

void Scheduler::release_blocks(int slot) {
  std::vector<int32_t>& held = held_[slot];
  for (auto it = held.rbegin(); it != held.rend(); ++it) free_blocks_.push_back(*it);
  held.clear();
}

bool Scheduler::make_room(int want, int keep) {
  while (available_blocks() < want) {
    int oldest = -1;
    for (int s = 0; s < opt_.max_slots; ++s)
      if (s != keep && !slots_[s].active && !held_[s].empty() &&
          (oldest < 0 || idle_since_[s] < idle_since_[oldest]))
        oldest = s;
    if (oldest < 0) return false;
    release_blocks(oldest);
  }
  return true;
}

bool Scheduler::cancel(uint64_t id) {
  for (auto it = queue_.begin(); it != queue_.end(); ++it) {
    if (it->id != id) continue;
    Finished f;
    f.id = id;
    f.slot = it->slot;
    f.end_pos = it->start_pos;
    f.reason = FinishReason::Cancelled;
    queue_.erase(it);
    if (on_finish) on_finish(std::move(f));
    return true;
  }
  for (int slot = 0; slot < opt_.max_slots; ++slot) {
    Seq& q = slots_[slot];
    if (!q.active || q.id != id || q.cancelled) continue;
    q.cancelled = true;
    if (q.inflight == 0) finish_seq(slot, FinishReason::Cancelled);
    return true;
  }
  return false;
}

bool Scheduler::next_picks(const Step& step, std::vector<TokenPick>& picks) {
  // One factory makes every chooser: either all of them give picks or none does (then the first
  // refuses before any stream has advanced).
  picks.resize(step.logit_slots.size());
  size_t given = 0;
  while (given < picks.size() && slots_[step.logit_slots[given]].chooser->next_pick(picks[given]))
    ++given;
  if (given == picks.size()) return true;
  GPTOSS_ASSERT(given == 0 && "choosers of one scheduler disagree on next_pick");
  return false;
}

bool Scheduler::run_step(Engine& engine) {
  Step step;
  if (!plan(step)) return false;
  if (engine.picks_on_device() && next_picks(step, picks_)) {
    engine.forward_pick(step.rows, picks_, tokens_);
    commit_tokens(step, tokens_);
    return true;
  }
  engine.forward(step.rows, logits_);
  commit(step, logits_, engine.config().vocab);
  return true;
}

}  // namespace gptoss
