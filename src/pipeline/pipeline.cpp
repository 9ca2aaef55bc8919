// pipeline.cpp: the ring pipeline (pipeline.h; protocol in docs/pipeline.md).
#include "pipeline/pipeline.h"

#include <omp.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "comm/link_common.h"
#include "comm/mpi_check.h"
#include "comm/world.h"
#include "common/error.h"
#include "pipeline/layer_split.h"
#ifdef GPTOSS_HAVE_GPU
#include "comm/ipc_transport.h"
#endif

namespace gptoss {

namespace {
double now_us() { return omp_get_wtime() * 1e6; }
}  // namespace

Pipeline::Pipeline(MPI_Comm comm, const Config& c, const BackendFactory& make_backend,
                   const PipelineOptions& opt)
    : comm_(comm), opt_(opt) {
  CHECK_MPI(MPI_Comm_rank(comm, &rank_));
  CHECK_MPI(MPI_Comm_size(comm, &size_));
  // Every rank makes these checks on the same options and model, so all of them fail alike:
  // a WorldError, printed once by rank 0, and every rank exits 1 (no abort, no duplicates).
  try {
    if (c.n_layers < size_)
      fail("the model has %d layers: it cannot be split over %d ranks (each rank needs at least "
           "one layer); run with at most %d ranks",
           c.n_layers, size_, c.n_layers);
    mb_ = opt.micro_batches > 0 ? opt.micro_batches : size_;
    if (mb_ > 64) fail("--micro-batches %d: at most 64 (the link slots)", mb_);
    if (opt.max_slots < 0) fail("pipeline: max_slots %d", opt.max_slots);
    // The split is costed at a micro-batch's decode rows (with auto slots: the cap's) and prompt
    // tokens (split_rows).
    const int slots_guess = opt.max_slots > 0 ? opt.max_slots : opt.max_auto_slots;
    const SplitRows sr = split_rows(std::max(1, (slots_guess + mb_ - 1) / mb_),
                                    std::max(1, (opt.chunk_tokens + mb_ - 1) / mb_));
    layers_ = opt.layers.empty() ? balanced_split(c, size_, sr.rows, sr.logit_rows)
                                 : parse_layer_split(opt.layers, c.n_layers, size_);
  } catch (const comm::WorldError&) {
    throw;
  } catch (const Error& e) {
    throw comm::WorldError(e.what());
  }
  int first = 0;
  for (int r = 0; r < rank_; ++r) first += layers_[r];
  backend_ = make_backend(first, first + layers_[rank_], rank_ == 0);
  if (opt.max_slots == 0) {  // auto: what every backend's memory holds (COLLECTIVE)
    const int mine = backend_->max_slots();
    CHECK_MPI(MPI_Allreduce(&mine, &opt_.max_slots, 1, MPI_INT, MPI_MIN, comm));
  }
  // A micro-batch is 1/M of a step: at most ceil(slots / M) decode rows and ceil(chunk / M)
  // prompt tokens (at least chunk/8 of them, as in a whole step).
  limits_.max_decode_rows = std::max(1, (opt_.max_slots + mb_ - 1) / mb_);
  limits_.token_budget = std::max(1, (opt.chunk_tokens + mb_ - 1) / mb_);
  limits_.fifo_prefill = true;
  const int max_rows = limits_.max_decode_rows + limits_.token_budget;
  check_ = std::make_unique<SequenceCheck>(opt_.max_slots, opt_.ctx, 0);

  comm::LinkSpec spec;
  spec.slots = mb_;  // deadlock rule: micro-batches in flight M <= slots K (docs/transport.md)
  spec.max_rows = static_cast<uint32_t>(max_rows);
  spec.max_payload_bytes = static_cast<size_t>(max_rows) * c.hidden * sizeof(float);
  spec.payload_memory = backend_->payload_memory();
  spec.timeout_s = opt.timeout_s;
  spec.spin_us = backend_->link_spin_us();
  spec.device = backend_->device();
  spec.allow_ipc = opt.allow_ipc;
  ring_ = open_ring(comm, spec);  // collective
}

// The transport follows the payloads: device payloads GPU to GPU (the GPU ring picks IPC or
// host-staged MPI per link), host payloads over MPI. Every rank's backend is of one kind.
std::unique_ptr<comm::Ring> Pipeline::open_ring(MPI_Comm comm, const comm::LinkSpec& spec) {
  if (spec.payload_memory == MemoryKind::Device) {
#ifdef GPTOSS_HAVE_GPU
    return comm::open_gpu_ring(comm, spec);
#else
    fail("pipeline: a backend with device payloads in a build without a GPU backend");
#endif
  }
  return comm::open_ring(comm, spec);
}

Pipeline::~Pipeline() = default;

std::string Pipeline::describe() const {
  return strfmt("pipeline: %d rank%s, %d micro-batch%s in flight (<= %d decode rows + %d prompt "
                "tokens each); %s; %s",
                size_, size_ == 1 ? "" : "s", mb_, mb_ == 1 ? "" : "es", limits_.max_decode_rows,
                limits_.token_budget, describe_split(layers_).c_str(), ring_->describe().c_str());
}

// Rank 0: plan, embed, own layers, post to rank 1 (to itself with one rank).
void Pipeline::send(const Scheduler::Step& step) {
  const int n = static_cast<int>(step.rows.size());
  const int H = backend_->config().hidden;
  const double ta = now_us();
  if (first_us_ < 0) first_us_ = ta;
  comm::Slot& s = ring_->next().acquire();
  const double t0 = now_us();
  if (static_cast<uint32_t>(n) > s.row_capacity)
    fail("pipeline: micro-batch of %d rows exceeds the slot capacity %u", n, s.row_capacity);
  tokens_.resize(n);
  pos_.resize(n);
  for (int i = 0; i < n; ++i) {
    const Row& r = step.rows[i];
    uint32_t f = 0;
    if (r.flags & Row::kNewSeq) f |= comm::kRowNewSequence;
    if (r.flags & Row::kLogits) f |= comm::kRowNeedsLogits | comm::kRowLastPromptToken;
    // RowHeader::user carries the row's KV block (paged cache; -1 when not paged).
    s.rows[i] = comm::RowHeader{r.slot, r.pos, f, static_cast<uint32_t>(r.block)};
    tokens_[i] = r.token;
    pos_[i] = RowPos{r.slot, r.pos, r.block};
  }
  s.header->flags = 0;
  s.header->micro_batch_id = next_id_++;
  s.header->rows = static_cast<uint32_t>(n);
  s.header->payload_bytes = static_cast<uint64_t>(n) * H * sizeof(float);
  check_rows(s);
  backend_->run(tokens_, pos_, nullptr, static_cast<float*>(s.payload));  // [rows, hidden]
  busy_us_ += now_us() - t0;
  ring_->next().post_on(s, backend_->stream());
  prof_[1] += now_us() - ta;
  ++prof_mb_;
  prof_rows_ += static_cast<uint64_t>(n);
}

// Rank 0: the micro-batch back from rank N-1: LM head on the rows that need logits, choose.
void Pipeline::receive_and_commit(Scheduler& sch, const Scheduler::Step& step) {
  const double tw = now_us();
  const comm::Slot& s = receive_back();
  const double t0 = now_us();
  prof_[2] += t0 - tw;
  const Config& c = backend_->config();
  const uint32_t expect_id = recv_id_++;
  if (s.header->micro_batch_id != expect_id || (s.header->flags & comm::kMsgShutdown))
    fail("pipeline: micro-batch %u came back from rank %d where %u was expected",
         s.header->micro_batch_id, size_ - 1, expect_id);
  const uint32_t n = s.header->rows;
  if (n != step.rows.size())
    fail("pipeline: micro-batch %u came back with %u rows, %zu were sent", s.header->micro_batch_id,
         n, step.rows.size());
  logit_rows_.clear();
  for (uint32_t i = 0; i < n; ++i)
    if (s.rows[i].flags & comm::kRowNeedsLogits) logit_rows_.push_back(static_cast<int32_t>(i));
  prof_logit_rows_ += logit_rows_.size();
  if (logit_rows_.size() != step.logit_slots.size())
    fail("pipeline: micro-batch %u came back with %zu logit rows, %zu expected",
         s.header->micro_batch_id, logit_rows_.size(), step.logit_slots.size());
  const float* x = static_cast<const float*>(s.payload);
  double th = 0;
  if (backend_->picks_on_device() && sch.next_picks(step, picks_)) {
    backend_->head_pick(x, logit_rows_, picks_, picked_);  // complete on return
    ring_->prev().release_on(s, backend_->stream());
    th = now_us();
    sch.commit_tokens(step, picked_);
  } else {
    logits_.resize(logit_rows_.size() * static_cast<size_t>(c.vocab));
    backend_->head(x, logit_rows_, logits_.data());  // complete on return
    ring_->prev().release_on(s, backend_->stream());
    th = now_us();
    sch.commit(step, logits_, c.vocab);
  }
  const double t1 = now_us();
  prof_[3] += th - t0;
  prof_[4] += t1 - th;
  busy_us_ += t1 - t0;
}

// Rank 0: the next micro-batch back from rank N-1, within turn_timeout_s when that is the
// tighter bound (the link's own wait would allow timeout_s).
const comm::Slot& Pipeline::receive_back() {
  comm::RecvLink& link = ring_->prev();
  const double limit_s = opt_.turn_timeout_s;
  if (!(limit_s > 0) || limit_s >= opt_.timeout_s) return link.receive_on(backend_->stream());
  comm::LinkSpec bound = link.spec();
  bound.timeout_s = limit_s;
  double waited_us = 0;
  const comm::Slot* got = nullptr;
  comm::detail::wait_until(
      bound, &waited_us, [&] { return (got = link.try_receive_on(backend_->stream())) != nullptr; },
      [&] {
        return strfmt("pipeline: micro-batch %u has not come back from rank %d after %.0f s "
                      "(--ring-timeout): a rank is stuck",
                      recv_id_, size_ - 1, limit_s);
      });
  return *got;
}

// Every rank checks the rows of each micro-batch it sees against its own record of each slot
// (SequenceCheck, from the headers alone) and refuses a row that does not continue its sequence:
// a protocol error, never silent.
void Pipeline::check_rows(const comm::Slot& s) {
  const uint32_t n = s.header->rows;
  check_rows_.resize(n);
  for (uint32_t i = 0; i < n; ++i) {
    const comm::RowHeader& r = s.rows[i];
    check_rows_[i] = Row{0, r.seq_slot, r.position,
                         (r.flags & comm::kRowNewSequence) ? uint32_t(Row::kNewSeq) : 0u};
  }
  check_->apply(check_rows_, "pipeline: micro-batch", s.header->micro_batch_id);
}

void Pipeline::run(Scheduler& sch, const std::function<bool()>& should_stop,
                   const std::function<void()>& after_commit,
                   const std::function<void()>& before_plan) {
  GPTOSS_ASSERT(rank_ == 0);
  std::deque<Scheduler::Step> inflight;
  for (;;) {
    const bool stopping = should_stop && should_stop();
    if (!stopping && before_plan) before_plan();
    while (!stopping && static_cast<int>(inflight.size()) < mb_) {
      Scheduler::Step st;
      const double tp = now_us();
      const bool planned = sch.plan(st, limits_);
      prof_[0] += now_us() - tp;
      if (!planned) break;
      send(st);
      inflight.push_back(std::move(st));
    }
    if (inflight.empty()) {
      if (!stopping && sch.busy()) fail("pipeline: the scheduler is busy but planned nothing");
      return;
    }
    receive_and_commit(sch, inflight.front());
    inflight.pop_front();
    if (after_commit) after_commit();
  }
}

void Pipeline::serve() {
  GPTOSS_ASSERT(rank_ != 0);
  const size_t H = backend_->config().hidden;
  void* stream = backend_->stream();
  for (;;) {
    const comm::Slot& in = ring_->prev().receive_on(stream);
    if (first_us_ < 0) first_us_ = now_us();
    comm::Slot& out = ring_->next().acquire();
    const double t0 = now_us();
    const uint32_t n = in.header->rows;
    out.header->flags = in.header->flags;
    out.header->micro_batch_id = in.header->micro_batch_id;
    out.header->rows = n;
    out.header->payload_bytes = in.header->payload_bytes;
    std::memcpy(out.header->user, in.header->user, sizeof out.header->user);
    const bool shutdown = (in.header->flags & comm::kMsgShutdown) != 0;
    if (!shutdown) {
      if (in.header->payload_bytes != n * H * sizeof(float))
        fail("pipeline: micro-batch %u: %llu payload bytes for %u rows of %zu floats",
             in.header->micro_batch_id, (unsigned long long)in.header->payload_bytes, n, H);
      check_rows(in);
      std::memcpy(out.rows, in.rows, n * sizeof(comm::RowHeader));
      pos_.resize(n);
      for (uint32_t i = 0; i < n; ++i)
        pos_[i] = RowPos{in.rows[i].seq_slot, in.rows[i].position,
                         static_cast<int32_t>(in.rows[i].user)};
      backend_->run({}, pos_, static_cast<const float*>(in.payload), static_cast<float*>(out.payload));
    }
    busy_us_ += now_us() - t0;
    ring_->next().post_on(out, stream);
    ring_->prev().release_on(in, stream);
    if (shutdown) return;
  }
}

std::vector<comm::StageTiming> Pipeline::finish() {
  GPTOSS_ASSERT(!finished_);
  finished_ = true;
  if (rank_ == 0) {
    comm::Slot& s = ring_->next().acquire();
    s.header->flags = comm::kMsgShutdown;
    s.header->micro_batch_id = next_id_++;
    s.header->rows = 0;
    s.header->payload_bytes = 0;
    ring_->next().post_on(s, backend_->stream());
    const comm::Slot& back = ring_->prev().receive_on(backend_->stream());
    const bool ok = (back.header->flags & comm::kMsgShutdown) != 0;
    ring_->prev().release(back);
    if (!ok) fail("pipeline: expected the shutdown message back from rank %d", size_ - 1);
  }
  ring_->next().drain();
  const double end_us = now_us();
  // A GPU stage's busy time is measured on its device, and its idle time is the rest of the wall
  // time since its first message (its host waits say little: it runs ahead of the device).
  const double device_us = backend_->device_busy_us();
  comm::StageTiming mine = comm::timing_from_ring(*ring_, device_us >= 0 ? device_us : busy_us_);
  if (device_us >= 0)
    mine.idle_us = std::max(0.0, (first_us_ < 0 ? 0.0 : end_us - first_us_) - device_us);
  if (rank_ == 0 && opt_.profile) {
    std::fprintf(stderr,
                 "pipeline profile rank 0 (host ms): plan %.1f, acquire+send %.1f, wait back "
                 "%.1f, head+choice %.1f, commit %.1f; %llu micro-batches, %.1f rows and %.1f "
                 "logit rows each; wall %.1f ms, device busy %.1f ms\n",
                 prof_[0] / 1e3, prof_[1] / 1e3, prof_[2] / 1e3, prof_[3] / 1e3, prof_[4] / 1e3,
                 (unsigned long long)prof_mb_,
                 prof_mb_ ? double(prof_rows_) / double(prof_mb_) : 0.0,
                 prof_mb_ ? double(prof_logit_rows_) / double(prof_mb_) : 0.0,
                 first_us_ < 0 ? 0.0 : (end_us - first_us_) / 1e3, device_us / 1e3);
    // What the layer split's cost model needs: the device time of rank 0's layers per layer
    // against its LM head's, over the same micro-batches.
    const double head_us = backend_->device_head_busy_us();
    if (head_us >= 0 && device_us > 0)
      std::fprintf(stderr,
                   "pipeline profile rank 0 (device ms): %d layers %.1f (%.2f per layer), LM head "
                   "+ choice %.1f (= %.2f layers)\n",
                   layers_[0], (device_us - head_us) / 1e3,
                   (device_us - head_us) / 1e3 / layers_[0], head_us / 1e3,
                   device_us > head_us ? head_us * layers_[0] / (device_us - head_us) : 0.0);
  }
  auto t = comm::gather_stage_timing(mine, comm_);
  ring_.reset();
  return t;
}

}  // namespace gptoss
