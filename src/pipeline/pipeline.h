// pipeline.h: the MPI ring pipeline (docs/pipeline.md). Every rank owns one contiguous block of
// layers and their KV cache (its Backend, backend/backend.h); rank 0 also owns the scheduler, embedding, final norm, LM head and
// sampling. Micro-batches (scheduler steps) travel rank 0 -> 1 -> ... -> N-1 -> rank 0 as
//   MsgHeader (micro_batch_id, rows) + RowHeader per row (slot, position, flags) +
//   hidden states fp32 [rows, hidden]
// and the later stages manage their KV caches from the headers alone. One rank is the same code
// with a ring of one (rank 0 sends to itself).
//
// Life cycle (every call marked COLLECTIVE must be made by every rank, in this order):
//   Pipeline p(comm, config, make_backend, opts);  // COLLECTIVE: split, own backend, ring
//   rank 0: p.run(scheduler, ...) any number of times; ranks > 0: p.serve();
//   auto t = p.finish();               // COLLECTIVE: shutdown message round, timing to rank 0
#pragma once
#include <mpi.h>

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "comm/stage_timing.h"
#include "comm/transport.h"
#include "backend/backend.h"
#include "backend/sequence_check.h"
#include "sched/scheduler.h"

namespace gptoss {

// Makes this rank's backend for layers [first, last); rank0 says whether it also owns the
// embedding and the head. Called once per rank by the pipeline, after the split is known.
using BackendFactory = std::function<std::unique_ptr<Backend>(int first, int last, bool rank0)>;

struct PipelineOptions {
  int ctx = 4096;          // positions per sequence
  int max_slots = 1;       // KV-cache slots (concurrent sequences); 0 = auto: the least any
                           // backend holds (Backend::max_slots, e.g. a GPU's free memory)
  int max_auto_slots = 256;  // with max_slots 0: the cap the stages were given (costs the split)
  int chunk_tokens = 256;  // per-step token budget (--chunk); a micro-batch gets 1/M of it
  int micro_batches = 0;   // M in flight (0 = default: number of ranks); also the link slots
  std::string layers;      // --layers "4,7,7,6" ("" = balanced by the cost model)
  double timeout_s = 300;  // a stage waiting longer for a message fails, naming the peer
  // > 0: rank 0 fails when a micro-batch it sent has not come back within this many seconds,
  // even where timeout_s is unlimited (chat: the ring may idle while a person types, but a turn
  // stuck on a stopped rank still ends the job).
  double turn_timeout_s = 0;
  bool profile = false;  // rank 0 prints its host time by phase at finish (--profile)
  bool allow_ipc = true;  // device payloads may go GPU to GPU (--transport auto); false: MPI
  // The LM head split over the ranks (vocab-parallel, backend/head_split.h; --head-split):
  // "on", "off", or "auto" = on when the backends can (head_slices) and auto may choose it
  // (head_split_auto), there are several ranks, micro-batches carry several sequences, the split
  // is not given (--layers) and the cost model's bound gains >= 2% (layer_split.h).
  std::string head_split = "auto";
  bool head_slices = false;  // the backends implement Backend::head_slice_* (CPU and GPU: yes)
  // "auto" may choose the split. GPU: not yet (only "on"): its set-up does not size a slice's
  // memory (a rank > 0 allocates it on first use, which auto-sized KV caches leave no room for)
  // and its throughput on GPU rings is unmeasured (docs/pipeline.md).
  bool head_split_auto = true;
};

class Pipeline {
 public:
  // COLLECTIVE over comm. make_backend builds this rank's backend once the split is known (CPU:
  // make_cpu_backend; GPU: make_gpu_backend). The ring's transport follows the backend's payload
  // memory: host payloads go over MPI (comm::open_ring), device payloads GPU to GPU
  // (comm::open_gpu_ring, GPU builds). One rank is a ring of one.
  Pipeline(MPI_Comm comm, const Config& c, const BackendFactory& make_backend,
           const PipelineOptions& opt);
  ~Pipeline();

  int rank() const { return rank_; }
  int ranks() const { return size_; }
  int micro_batches() const { return mb_; }
  int max_slots() const { return opt_.max_slots; }  // agreed by every rank (auto resolved)
  const std::vector<int>& layers() const { return layers_; }  // layers per rank
  bool head_split() const { return head_split_; }
  // With the head split: rank r's ids are [vocab_bounds()[r], vocab_bounds()[r + 1]).
  const std::vector<int>& vocab_bounds() const { return vocab_bounds_; }
  size_t kv_cache_bytes() const { return backend_->kv_cache_bytes(); }
  bool pages_kv() const { return backend_->pages_kv(); }
  // Blocks of the paged pool every rank holds (the least of the backends' kv_pool_blocks()).
  int kv_blocks() const { return kv_blocks_; }
  Backend& backend() { return *backend_; }
  // One line for the start-up summary (split, micro-batches, transport).
  std::string describe() const;

  // Rank 0: runs the scheduler until it is idle, or until should_stop() returns true (checked
  // before every plan; micro-batches already in flight still finish and are committed).
  // after_commit() is called after every committed micro-batch; before_plan() before each round
  // of planning (a server submits and cancels requests there, so they join the running batch).
  void run(Scheduler& sch, const std::function<bool()>& should_stop = {},
           const std::function<void()>& after_commit = {},
           const std::function<void()>& before_plan = {});
  // Ranks > 0: processes micro-batches until rank 0's shutdown message.
  void serve();
  // COLLECTIVE: rank 0 sends the shutdown message round the ring; every rank drains its links
  // and the per-stage timing is gathered. Rank 0 gets one entry per stage, the others {}.
  std::vector<comm::StageTiming> finish();

 private:
  // Rank 0: a micro-batch in flight, from send() to its commit (in send order).
  struct Flight {
    Scheduler::Step step;
    uint32_t id = 0;
    bool back = false;   // its first lap came back
    bool lap2 = false;   // head split: its second lap is out
    bool done = false;   // its tokens (or logits) are known
    bool picks = false;  // tokens chosen here (commit_tokens) rather than logits (commit)
    std::vector<TokenPick> pick;   // [logit rows]
    std::vector<int32_t> tokens;   // [logit rows]
    std::vector<int32_t> split;    // head split: the logit rows (indices into pick) in lap 2
    std::vector<float> logits;     // !picks: [logit rows, vocab]
  };
  uint32_t send(const Scheduler::Step& step);
  void advance(Scheduler& sch);  // receives one message from rank N-1 and handles it
  void first_lap_back(Scheduler& sch, Flight& f, const comm::Slot& s);
  void second_lap_back(Flight& f, const comm::Slot& s);
  const comm::Slot& receive_back();
  void check_rows(const comm::Slot& s);
  std::unique_ptr<comm::Ring> open_ring(MPI_Comm comm, const comm::LinkSpec& spec);

  MPI_Comm comm_;  // the ring's (collectives: the timing gathered at finish)
  int rank_ = 0, size_ = 1, mb_ = 1;
  std::vector<int> layers_;
  bool head_split_ = false;
  std::vector<int> vocab_bounds_;
  std::deque<Flight> flights_;  // rank 0
  std::vector<int32_t> rows_a_, rows_b_, k_, whole_;  // head split: first_lap_back's row lists
  std::vector<std::vector<float>> spare_logits_;  // committed flights' logit buffers, reused
  std::vector<TokenPick> picks_b_;
  std::vector<HeadRow> head_rows_;
  PipelineOptions opt_;
  int kv_blocks_ = 0;  // kv_blocks()
  Scheduler::PlanLimits limits_;
  std::unique_ptr<Backend> backend_;
  std::unique_ptr<SequenceCheck> check_;  // every rank checks the rows it sees (headers)
  std::unique_ptr<comm::Ring> ring_;
  uint32_t next_id_ = 0, recv_id_ = 0;  // micro-batch ids sent / expected back, rank 0
  std::vector<Row> check_rows_;  // the headers as Rows, for check_
  std::vector<int32_t> tokens_;
  std::vector<RowPos> pos_;
  std::vector<int32_t> logit_rows_, picked_;  // rows needing logits, tokens chosen for them
  double busy_us_ = 0;
  double first_us_ = -1;  // first message handled (wall time base of a GPU stage's idle time)
  // Rank 0's host time by phase (--profile prints it at finish): plan, acquire+send,
  // wait for the micro-batch back, head + token choice (device sync), commit; micro-batches, rows.
  double prof_[5] = {0, 0, 0, 0, 0};
  uint64_t prof_mb_ = 0, prof_rows_ = 0, prof_logit_rows_ = 0;
  uint64_t prof_split_rows_ = 0, prof_split_whole_ = 0;  // head split: rows chosen by slices /
                                                          // from the whole head
  bool finished_ = false;
};

}  // namespace gptoss
