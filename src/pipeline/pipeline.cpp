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
    const std::vector<int> given =
        opt.layers.empty() ? std::vector<int>{} : parse_layer_split(opt.layers, c.n_layers, size_);
    layers_ = given.empty() ? balanced_split(c, size_, sr.rows, sr.logit_rows) : given;
    const std::string& hs = opt.head_split;
    if (hs != "auto" && hs != "on" && hs != "off")
      fail("--head-split %s: must be auto, on or off", hs.c_str());
    if (hs == "on" && size_ > 1 && !opt.head_slices)
      fail("--head-split on: this backend cannot compute slices of the LM head; use --head-split "
           "off");
    if (size_ > 1 && opt.head_slices && hs != "off") {
      const HeadSplitPlan hp = head_split_plan(c, size_, sr.rows, sr.logit_rows, given);
      const bool use =
          hs == "on" || (opt.head_split_auto && given.empty() && sr.logit_rows >= 2 &&
                         head_split_efficiency(c, hp, sr.rows, sr.logit_rows) >=
                             whole_head_efficiency(c, layers_, sr.rows, sr.logit_rows) + 0.02);
      if (use) {
        head_split_ = true;
        layers_ = hp.layers;
        vocab_bounds_ = hp.vocab_bounds;
      }
    }
  } catch (const comm::WorldError&) {
    throw;
  } catch (const Error& e) {
    throw comm::WorldError(e.what());
  }
  int first = 0;
  for (int r = 0; r < rank_; ++r) first += layers_[r];
  backend_ = make_backend(first, first + layers_[rank_], rank_ == 0);
  if (head_split_ && !backend_->can_head_slice())  // every rank's backend is of one kind
    throw comm::WorldError("pipeline: the head split needs backends that compute slices of the "
                           "LM head; this one cannot (--head-split off)");
  if (opt.max_slots == 0) {  // auto: what every backend's memory holds (COLLECTIVE)
    const int mine = backend_->max_slots();
    CHECK_MPI(MPI_Allreduce(&mine, &opt_.max_slots, 1, MPI_INT, MPI_MIN, comm));
  }
  if (backend_->pages_kv()) {  // the pool's blocks every rank holds (COLLECTIVE)
    const int mine = backend_->kv_pool_blocks();
    CHECK_MPI(MPI_Allreduce(&mine, &kv_blocks_, 1, MPI_INT, MPI_MIN, comm));
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
  if (head_split_)  // the second lap: HeadRow + hidden state per row needing logits
    spec.max_payload_bytes = std::max(spec.max_payload_bytes,
                                      head_payload_bytes(static_cast<size_t>(max_rows), c.hidden));
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
  std::string head;
  if (head_split_) {
    head = "; LM head split over the ranks (vocab ids";
    for (int r = 0; r < size_; ++r)
      head += strfmt("%s rank %d [%d, %d)", r ? "," : "", r, vocab_bounds_[r], vocab_bounds_[r + 1]);
    head += "; rank 0 chooses)";
  }
  return strfmt("pipeline: %d rank%s, %d micro-batch%s in flight (<= %d decode rows + %d prompt "
                "tokens each); %s%s; %s",
                size_, size_ == 1 ? "" : "s", mb_, mb_ == 1 ? "" : "es", limits_.max_decode_rows,
                limits_.token_budget, describe_split(layers_).c_str(), head.c_str(),
                ring_->describe().c_str());
}

// Rank 0: plan, embed, own layers, post to rank 1 (to itself with one rank).
uint32_t Pipeline::send(const Scheduler::Step& step) {
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
  const uint32_t id = next_id_++;
  s.header->micro_batch_id = id;
  s.header->rows = static_cast<uint32_t>(n);
  s.header->payload_bytes = static_cast<uint64_t>(n) * H * sizeof(float);
  check_rows(s);
  backend_->run(tokens_, pos_, nullptr, static_cast<float*>(s.payload));  // [rows, hidden]
  busy_us_ += now_us() - t0;
  ring_->next().post_on(s, backend_->stream());
  prof_[1] += now_us() - ta;
  ++prof_mb_;
  prof_rows_ += static_cast<uint64_t>(n);
  return id;
}

// Rank 0: the next message from rank N-1: a micro-batch's first lap (in send order), or, with the
// head split, its second lap (in the order the second laps went out, which is the same).
void Pipeline::advance(Scheduler& sch) {
  const double tw = now_us();
  const comm::Slot& s = receive_back();
  const double t0 = now_us();
  prof_[2] += t0 - tw;
  if (s.header->flags & comm::kMsgShutdown)
    fail("pipeline: a shutdown message came back from rank %d while micro-batches were in flight",
         size_ - 1);
  const bool second = (s.header->flags & comm::kMsgHeadSplit) != 0;
  Flight* f = nullptr;
  for (Flight& g : flights_)
    if (second ? (g.lap2 && !g.done) : !g.back) {
      f = &g;
      break;
    }
  if (!f || s.header->micro_batch_id != f->id)
    fail("pipeline: micro-batch %u (%s lap) came back from rank %d where %s was expected",
         s.header->micro_batch_id, second ? "second" : "first", size_ - 1,
         f ? strfmt("%u", f->id).c_str() : "none");
  if (second)
    second_lap_back(*f, s);
  else
    first_lap_back(sch, *f, s);
  prof_[3] += now_us() - t0;
  busy_us_ += now_us() - t0;
}

// Rank 0: a micro-batch's first lap is back (every layer done): the LM head and the choice for
// the rows that need logits, or, with the head split, rank 0's slice and the second lap out.
void Pipeline::first_lap_back(Scheduler& sch, Flight& f, const comm::Slot& s) {
  const Config& c = backend_->config();
  const uint32_t expect_id = recv_id_++;
  GPTOSS_ASSERT(f.id == expect_id);
  f.back = true;
  const uint32_t n = s.header->rows;
  if (n != f.step.rows.size())
    fail("pipeline: micro-batch %u came back with %u rows, %zu were sent", f.id, n,
         f.step.rows.size());
  logit_rows_.clear();
  for (uint32_t i = 0; i < n; ++i)
    if (s.rows[i].flags & comm::kRowNeedsLogits) logit_rows_.push_back(static_cast<int32_t>(i));
  prof_logit_rows_ += logit_rows_.size();
  if (logit_rows_.size() != f.step.logit_slots.size())
    fail("pipeline: micro-batch %u came back with %zu logit rows, %zu expected", f.id,
         logit_rows_.size(), f.step.logit_slots.size());
  const float* x = static_cast<const float*>(s.payload);
  const bool pick_here = head_split_ || backend_->picks_on_device();
  f.picks = pick_here && sch.next_picks(f.step, f.pick);
  if (!f.picks) {  // host logits, chosen at the commit
    if (!spare_logits_.empty()) {  // [logit rows, vocab] is large: reuse a committed flight's
      f.logits = std::move(spare_logits_.back());
      spare_logits_.pop_back();
    }
    f.logits.resize(logit_rows_.size() * static_cast<size_t>(c.vocab));
    backend_->head(x, logit_rows_, f.logits.data());  // complete on return
    ring_->prev().release_on(s, backend_->stream());
    f.done = true;
    return;
  }
  f.tokens.assign(logit_rows_.size(), -1);
  if (!head_split_) {
    backend_->head_pick(x, logit_rows_, f.pick, f.tokens);  // complete on return
    ring_->prev().release_on(s, backend_->stream());
    f.done = true;
    return;
  }
  // Head split: rows the candidates can choose go round the ring once more (k_ candidates each);
  // the others rank 0 chooses now from its whole head.
  rows_a_.clear();
  rows_b_.clear();
  picks_b_.clear();
  k_.clear();
  f.split.clear();
  whole_.clear();
  for (size_t i = 0; i < logit_rows_.size(); ++i) {
    const int k = head_split_k(f.pick[i], c.vocab);
    if (k > 0) {
      f.split.push_back(static_cast<int32_t>(i));
      rows_a_.push_back(logit_rows_[i]);
      k_.push_back(k);
    } else {
      whole_.push_back(static_cast<int32_t>(i));
      rows_b_.push_back(logit_rows_[i]);
      picks_b_.push_back(f.pick[i]);
    }
  }
  prof_split_whole_ += rows_b_.size();
  if (!rows_b_.empty()) {
    picked_.clear();
    backend_->head_pick(x, rows_b_, picks_b_, picked_);
    for (size_t j = 0; j < whole_.size(); ++j) f.tokens[whole_[j]] = picked_[j];
  }
  if (f.split.empty()) {
    ring_->prev().release_on(s, backend_->stream());
    f.done = true;
    return;
  }
  const uint32_t m = static_cast<uint32_t>(f.split.size());
  comm::Slot& out = ring_->next().acquire();
  out.header->flags = comm::kMsgHeadSplit;
  out.header->micro_batch_id = f.id;
  out.header->rows = m;
  out.header->payload_bytes = head_payload_bytes(m, c.hidden);
  for (uint32_t j = 0; j < m; ++j) out.rows[j] = s.rows[rows_a_[j]];
  backend_->head_slice_first(x, rows_a_, k_, vocab_bounds_[0], vocab_bounds_[1], out.payload);
  ring_->prev().release_on(s, backend_->stream());
  ring_->next().post_on(out, backend_->stream());
  f.lap2 = true;
}

// Rank 0: the second lap is back with every slice's candidates merged: choose.
void Pipeline::second_lap_back(Flight& f, const comm::Slot& s) {
  const uint32_t m = s.header->rows;
  const size_t H = backend_->config().hidden;
  if (m != f.split.size() || s.header->payload_bytes != head_payload_bytes(m, H))
    fail("pipeline: micro-batch %u's second lap came back with %u rows (%llu bytes), %zu were sent",
         f.id, m, (unsigned long long)s.header->payload_bytes, f.split.size());
  head_rows_.resize(m);
  backend_->head_rows_read(s.payload, static_cast<int>(m), head_rows_.data());
  prof_split_rows_ += m;
  for (uint32_t j = 0; j < m; ++j) {
    const TokenPick& p = f.pick[f.split[j]];
    int32_t t = head_row_pick(head_rows_[j], p);
    if (t < 0) {  // a non-finite logit in a top-k row: the whole head, as without the split
      --prof_split_rows_;
      ++prof_split_whole_;
      const int32_t row = static_cast<int32_t>(j);
      picked_.clear();
      backend_->head_pick(head_x(s.payload, m), std::span<const int32_t>(&row, 1),
                          std::span<const TokenPick>(&p, 1), picked_);
      t = picked_[0];
    }
    f.tokens[f.split[j]] = t;
  }
  ring_->prev().release_on(s, backend_->stream());
  f.done = true;
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
  const int vocab = backend_->config().vocab;
  for (;;) {
    const bool stopping = should_stop && should_stop();
    if (!stopping && before_plan) before_plan();
    while (!stopping && static_cast<int>(flights_.size()) < mb_) {
      Scheduler::Step st;
      const double tp = now_us();
      const bool planned = sch.plan(st, limits_);
      prof_[0] += now_us() - tp;
      if (!planned) break;
      flights_.emplace_back();
      flights_.back().step = std::move(st);
      flights_.back().id = send(flights_.back().step);
    }
    if (flights_.empty()) {
      if (!stopping && sch.busy()) fail("pipeline: the scheduler is busy but planned nothing");
      return;
    }
    while (!flights_.front().done) advance(sch);
    Flight& f = flights_.front();
    const double tc = now_us();
    if (f.picks)
      sch.commit_tokens(f.step, f.tokens);
    else
      sch.commit(f.step, f.logits, vocab);
    const double dt = now_us() - tc;
    prof_[4] += dt;
    busy_us_ += dt;
    if (!f.logits.empty()) spare_logits_.push_back(std::move(f.logits));
    flights_.pop_front();
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
    if (!shutdown && (in.header->flags & comm::kMsgHeadSplit)) {  // the head split's second lap
      if (!head_split_ || in.header->payload_bytes != head_payload_bytes(n, H))
        fail("pipeline: micro-batch %u: a head-split message of %llu bytes for %u rows%s",
             in.header->micro_batch_id, (unsigned long long)in.header->payload_bytes, n,
             head_split_ ? "" : " without the head split");
      std::memcpy(out.rows, in.rows, n * sizeof(comm::RowHeader));
      backend_->head_slice_next(in.payload, out.payload, static_cast<int>(n), vocab_bounds_[rank_],
                                vocab_bounds_[rank_ + 1]);
    } else if (!shutdown) {
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
    if (head_split_)
      std::fprintf(stderr,
                   "pipeline profile rank 0: head split: %llu rows chosen from the slices' "
                   "candidates, %llu from the whole head\n",
                   (unsigned long long)prof_split_rows_, (unsigned long long)prof_split_whole_);
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
