// scheduler.h: continuous batching over an Engine. Requests (a prompt, or the new tokens of a chat
// turn continuing a sequence already in the KV cache) are admitted into free KV-cache slots;
// every step mixes one decode row per generating sequence with chunks of prompts being prefilled,
// within a per-step token budget. A finished sequence frees its slot, which the next queued
// request takes at the next step.
//
// The step is split into plan() -> engine forward -> commit() so that a pipelined engine can have
// several planned steps (micro-batches) in flight: a sequence with rows in flight is left out of
// later plans until its step is committed. run_step() is the synchronous form.
//
// Determinism: each request samples with its own TokenChooser made by the factory from the
// request id, and the engine's logits do not depend on batch composition, so a request's tokens
// do not depend on -b, --chunk or what else runs with it.
#pragma once
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <span>
#include <vector>

#include "backend/engine.h"
#include "backend/sampler.h"

namespace gptoss {

// Picks the next token from one row of logits [vocab]. One per request.
class TokenChooser {
 public:
  virtual ~TokenChooser() = default;
  virtual int32_t choose(const float* logits, int vocab) = 0;
  // The same choice as parameters + draw for an engine that picks on its device
  // (Engine::forward_pick): fills p, advances the chooser as choose() would, returns true. A
  // chooser that cannot be expressed this way returns false (the logits then come to the host).
  virtual bool next_pick(TokenPick& p) { (void)p; return false; }
};
using ChooserFactory = std::function<std::unique_ptr<TokenChooser>(uint64_t request_id)>;

// The chooser of every mode: one Sampler (engine/sampler.h), on the host or as device picks.
class SamplerChooser : public TokenChooser {
 public:
  explicit SamplerChooser(const SamplerParams& p) : s_(p) {}
  int32_t choose(const float* logits, int vocab) override { return s_.sample(logits, vocab); }
  bool next_pick(TokenPick& p) override {
    p = s_.next_pick();
    return true;
  }

 private:
  Sampler s_;
};

struct Request {
  uint64_t id = 0;
  std::vector<int32_t> tokens;  // fed before generating (non-empty)
  int max_new = 1;              // >= 1
  int start_pos = 0;            // > 0: continue the sequence already held in `slot` (chat turns)
  int slot = -1;                // -1: any free slot; required when start_pos > 0
};

enum class FinishReason { Stop, MaxTokens, Context, Cancelled };
const char* finish_reason_name(FinishReason r);

struct Finished {
  uint64_t id = 0;
  int slot = 0;
  int end_pos = 0;  // tokens of this sequence now in the KV cache (the last generated one is not)
  std::vector<int32_t> generated;  // stop token included when it ended the sequence
  FinishReason reason = FinishReason::MaxTokens;
};
// A request cancelled while still queued: Finished::slot is the request's (-1 unless it continues
// a sequence) and nothing was generated.

// The paged KV cache (docs/architecture.md): the full-attention layers keep their keys and values
// in one pool of kv_blocks blocks of kv_block_tokens positions, shared by every sequence. The
// scheduler owns the pool's bookkeeping and writes each row's block (Row::block); every rank's
// backend reads it from the rows (no table travels). A request is admitted only when the blocks
// it can need (prompt + max new tokens, at most ctx) are free, so a running sequence never runs
// out; concurrency is bounded by the tokens actually held, not by slots x ctx. A finished
// sequence's blocks stay with its slot (a chat turn continues it) until a new sequence takes the
// slot or an admission needs them (the idle slot that finished first gives them back first).
// kv_block_tokens 0: not paged (Row::block stays -1; the backend keeps slots x ctx).
struct SchedulerOptions {
  int max_slots = 1;      // KV-cache slots (engine's max_slots)
  int kv_block_tokens = 0;  // positions per block; 0 = not paged
  int kv_blocks = 0;        // blocks in the pool (paged: >= ceil(ctx / kv_block_tokens))
  int chunk_tokens = 256; // per-step token budget; decode rows always go in even past it, and
                          // prompt chunks get at least max(1, chunk_tokens / 8) of it
  // Prompt rows of one sequence per step at most (0 = no limit beyond the budget): the backend's
  // max_seq_rows_per_pass, so a budget larger than that is shared by several prompts instead of
  // being cut into smaller device steps.
  int seq_chunk = 0;
  int ctx = 4096;         // a sequence holds at most ctx tokens (prompt + generated)
  std::vector<int32_t> stop_ids;
  bool ignore_eos = false;
};

struct SchedulerStats {
  uint64_t steps = 0, prompt_rows = 0, decode_rows = 0, generated = 0;
};

class Scheduler {
 public:
  struct Step {
    std::vector<Row> rows;
    std::vector<int> logit_slots;  // slot of each kLogits row, in row order
  };

  // Limits of one plan() call. The defaults (0) mean "the whole step": every generating
  // sequence's decode row and --chunk prompt tokens. A pipelined engine that cuts a step into
  // micro-batches plans each micro-batch with smaller limits.
  struct PlanLimits {
    int max_decode_rows = 0;  // decode rows at most (0 = max_slots)
    int token_budget = 0;     // as SchedulerOptions::chunk_tokens (0 = chunk_tokens)
    // A FIFO engine (every micro-batch passes every stage in plan order) may take further prompt
    // chunks of a sequence whose earlier chunk is still in flight, so one long prompt pipelines.
    // Generated tokens still wait for their step's commit.
    bool fifo_prefill = false;
  };

  Scheduler(const SchedulerOptions& opt, ChooserFactory chooser);

  // Queues a request (FIFO). Error if it cannot fit the context (needs tokens + 1 <= ctx).
  void submit(Request r);
  // Admits queued requests into free slots and plans the next step's rows. False if there is
  // nothing to run now (everything idle, or all active sequences in flight).
  bool plan(Step& step);
  bool plan(Step& step, const PlanLimits& limits);
  // Samples the logits of a planned step ([rows with kLogits, vocab]), reports tokens and
  // finished sequences through the callbacks.
  void commit(const Step& step, std::span<const float> logits, int vocab);
  // The same with the tokens already chosen (one per kLogits row, e.g. by Engine::forward_pick).
  void commit_tokens(const Step& step, std::span<const int32_t> tokens);
  // The device-pick form of the choices a commit() of this step would make (Engine::forward_pick,
  // Stage::head_pick): fills picks (one per kLogits row), advancing each request's chooser as
  // commit() would, and returns true; false (nothing advanced) if the choosers cannot be expressed
  // as picks. Call once per step, then commit_tokens() with the chosen tokens.
  bool next_picks(const Step& step, std::vector<TokenPick>& picks);
  // plan + forward + commit. False when there was nothing to do.
  bool run_step(Engine& engine);
  // Ends request `id` (a chat turn stopped by Ctrl-C, a client that went away): on_finish gets
  // what it has generated so far, reason Cancelled, as a -n cut would (end_pos: the tokens in the
  // KV cache; the last generated token is not, and prompt tokens not yet sent are dropped). A
  // queued request finishes at once with nothing generated. An active sequence gets no further
  // rows and finishes as soon as none of its rows is in flight: at once between runs, else at the
  // commit of its last planned step (the tokens chosen there are dropped), so a pipelined engine
  // never commits rows into a slot that has been given to another request. False if no such
  // request is queued or active.
  bool cancel(uint64_t id);

  bool busy() const { return active_ > 0 || !queue_.empty(); }
  // Paged KV cache: blocks holding positions (of running or idle slots), and blocks promised to
  // running sequences but not taken yet; free = kv_blocks - used - promised.
  int kv_blocks_used() const { return opt_.kv_blocks - static_cast<int>(free_blocks_.size()) - promised_; }
  int kv_blocks_promised() const { return promised_; }
  // Blocks in the pool (0: not paged).
  int kv_blocks_total() const { return opt_.kv_block_tokens > 0 ? opt_.kv_blocks : 0; }
  // The blocks slot `slot` holds, in position order (tests, checks).
  const std::vector<int32_t>& kv_blocks_of(int slot) const { return held_[slot]; }
  int active() const { return active_; }
  size_t queued() const { return queue_.size(); }
  const SchedulerStats& stats() const { return stats_; }

  std::function<void(uint64_t id, int32_t token)> on_token;  // every sampled token, in order
  std::function<void(Finished&&)> on_finish;

 private:
  struct Seq {
    bool active = false;
    int inflight = 0;             // planned steps holding rows of this sequence, not committed
    uint64_t id = 0, admitted = 0;
    int pos = 0;                  // tokens of this sequence in the KV cache (incl. history)
    size_t next = 0;              // index into feed of the next token to send
    size_t prompt_len = 0;        // feed[0, prompt_len) came from the request
    std::vector<int32_t> feed;    // request tokens, then each generated token to send
    std::vector<int32_t> generated;
    int max_new = 1;
    bool new_seq = false;         // first row must carry kNewSeq
    bool cancelled = false;       // cancel(): no more rows; freed once inflight is 0
    int promised = 0;             // paged KV: blocks it may still take (counted in promised_)
    std::unique_ptr<TokenChooser> chooser;
  };
  bool admit_one();
  // Paged KV: gives slot's blocks back to the pool; frees idle slots' blocks (first finished
  // first, never `keep`) until `want` blocks are available. False if they cannot be.
  void release_blocks(int slot);
  bool make_room(int want, int keep);
  int available_blocks() const { return static_cast<int>(free_blocks_.size()) - promised_; }
  void finish_seq(int slot, FinishReason why);
  bool is_stop(int32_t t) const;

  SchedulerOptions opt_;
  ChooserFactory make_chooser_;
  std::deque<Request> queue_;
  std::vector<Seq> slots_;
  int active_ = 0;
  uint64_t admitted_count_ = 0;
  SchedulerStats stats_;
  std::vector<float> logits_;  // [rows with kLogits, vocab] for run_step
  std::vector<TokenPick> picks_;
  std::vector<int32_t> tokens_;
  std::vector<int> cancelled_done_;  // commit_tokens: cancelled slots to free
  // Paged KV cache.
  std::vector<int32_t> free_blocks_;        // a stack: the next block taken is back()
  int promised_ = 0;                         // sum of Seq::promised over running sequences
  std::vector<std::vector<int32_t>> held_;   // [slot]: its blocks, block i = positions [iB, (i+1)B)
  std::vector<uint64_t> idle_since_;         // [slot]: finish order of an idle slot's sequence
  uint64_t finished_count_ = 0;
};

}  // namespace gptoss
