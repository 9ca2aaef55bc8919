// rings_getp.cpp: getp over data-parallel rings (rings_getp.h).
#include "run/rings_getp.h"

#include <mpi.h>
#include <time.h>

#include <algorithm>
#include <cstdint>
#include <list>
#include <utility>

#include "common/error.h"
#include "pipeline/pipeline.h"
#include "run/rings.h"
#include "run/session.h"

namespace gptoss {

namespace {

enum Tag : int { kWork = 1, kStop, kEnd, kFinish, kResult, kDone };

void nap() {
  const timespec ts{0, 200'000};  // 0.2 ms: idle waits take no CPU from the working ranks
  nanosleep(&ts, nullptr);
}

// Non-blocking sends whose buffers live until MPI is done with them, so neither side ever blocks
// on the other's compute (a large Work or Result message would otherwise wait for the receiver
// to poll).
class Outbox {
 public:
  explicit Outbox(MPI_Comm c) : comm_(c) {}
  ~Outbox() { wait_all(); }
  void send(int dest, int tag, std::vector<int64_t> words) {
    if (words.empty()) words.push_back(0);  // never a null buffer
    q_.emplace_back(std::move(words), MPI_REQUEST_NULL);
    auto& [buf, req] = q_.back();
    MPI_Isend(buf.data(), static_cast<int>(buf.size()), MPI_INT64_T, dest, tag, comm_, &req);
  }
  void progress() {
    for (auto it = q_.begin(); it != q_.end();) {
      int done = 0;
      MPI_Test(&it->second, &done, MPI_STATUS_IGNORE);
      it = done ? q_.erase(it) : std::next(it);
    }
  }
  void wait_all() {
    for (auto& [buf, req] : q_) MPI_Wait(&req, MPI_STATUS_IGNORE);
    q_.clear();
  }

 private:
  MPI_Comm comm_;
  std::list<std::pair<std::vector<int64_t>, MPI_Request>> q_;
};

// The next message from `source` (MPI_ANY_SOURCE: anyone), if one has arrived.
bool try_receive(MPI_Comm c, int source, int& from, int& tag, std::vector<int64_t>& words) {
  int flag = 0;
  MPI_Status st;
  MPI_Iprobe(source, MPI_ANY_TAG, c, &flag, &st);
  if (!flag) return false;
  int count = 0;
  MPI_Get_count(&st, MPI_INT64_T, &count);
  words.resize(static_cast<size_t>(count));
  MPI_Recv(words.data(), count, MPI_INT64_T, st.MPI_SOURCE, st.MPI_TAG, c, MPI_STATUS_IGNORE);
  from = st.MPI_SOURCE;
  tag = st.MPI_TAG;
  return true;
}

SchedulerOptions ring_scheduler_options(const RunOptions& opt, const Session& s) {
  SchedulerOptions so;
  so.max_slots = s.slots;
  so.chunk_tokens = s.chunk_tokens;
  so.ctx = opt.ctx;
  so.stop_ids = opt.stop_ids;
  so.ignore_eos = opt.ignore_eos;
  return so;
}

}  // namespace

// ---- world rank 0 -------------------------------------------------------------------------------

struct RingsRunner::Impl {
  Session& s;
  MPI_Comm leaders;
  Scheduler sch;  // ring 0's
  Outbox out;
  struct Ring {
    int slots = 1;
    int outstanding = 0;  // prompts given and not finished
    uint64_t load = 0;    // their prompt + max_new tokens
    size_t prompts = 0;   // prompts given
    uint64_t generated = 0, prompt_rows = 0;
    bool done = false;    // its Done has arrived (rings > 0)
  };
  std::vector<Ring> ring;
  std::vector<uint64_t> cost;  // by request id: prompt + max_new tokens
  uint64_t remote_generated = 0;

  Impl(Session& s_, const SchedulerOptions& so, const ChooserFactory& chooser)
      : s(s_), leaders(rings().leaders), sch(so, chooser), out(rings().leaders) {}

  // A ring takes a prompt while it has fewer outstanding than its slots, plus a few queued ahead
  // on the other rings (a freed slot there is refilled without waiting for a round trip to rank
  // 0). The prompt goes to the eligible ring with the least outstanding load.
  int pick_ring() const {
    int best = -1;
    for (int k = 0; k < static_cast<int>(ring.size()); ++k) {
      const Ring& r = ring[k];
      const int cap = k == 0 ? r.slots : r.slots + std::max(2, r.slots / 4);
      if (r.outstanding >= cap) continue;
      if (best < 0 || r.load < ring[best].load) best = k;
    }
    return best;
  }
};

RingsRunner::RingsRunner(Session& s, const SchedulerOptions& so, const ChooserFactory& chooser,
                         uint64_t seed)
    : impl_(std::make_unique<Impl>(s, so, chooser)) {
  const Rings& r = rings();
  GPTOSS_ASSERT(r.world_rank == 0 && r.dp > 1 && r.leaders != MPI_COMM_NULL);
  std::vector<int> slots(static_cast<size_t>(r.dp));
  int mine = s.slots;
  MPI_Gather(&mine, 1, MPI_INT, slots.data(), 1, MPI_INT, 0, r.leaders);  // collective
  uint64_t sd = seed;
  MPI_Bcast(&sd, 1, MPI_UINT64_T, 0, r.leaders);  // collective
  impl_->ring.resize(slots.size());
  for (size_t k = 0; k < slots.size(); ++k) impl_->ring[k].slots = std::max(1, slots[k]);
}

RingsRunner::~RingsRunner() = default;

uint64_t RingsRunner::generated() const {
  return impl_->sch.stats().generated + impl_->remote_generated;
}

uint64_t RingsRunner::prompt_rows() const {
  uint64_t n = impl_->sch.stats().prompt_rows;
  for (size_t k = 1; k < impl_->ring.size(); ++k) n += impl_->ring[k].prompt_rows;
  return n;
}

std::string RingsRunner::summary() const {
  std::string p, g;
  for (size_t k = 0; k < impl_->ring.size(); ++k) {
    const auto& r = impl_->ring[k];
    const uint64_t gen = k == 0 ? impl_->sch.stats().generated : r.generated;
    p += strfmt("%s%zu", k ? ", " : "", r.prompts);
    g += strfmt("%s%llu", k ? ", " : "", (unsigned long long)gen);
  }
  return "prompts per ring " + p + "; tokens generated per ring " + g;
}

void RingsRunner::run(std::vector<Request>& todo, const std::function<void(Finished&&)>& on_finish,
                      const std::function<bool()>& stop, const std::function<void()>& progress) {
  Impl& m = *impl_;
  const int R = static_cast<int>(m.ring.size());
  for (const Request& q : todo) {
    if (q.id >= m.cost.size()) m.cost.resize(q.id + 1, 0);
    m.cost[q.id] = q.tokens.size() + static_cast<uint64_t>(q.max_new);
  }
  auto settle = [&](int k, uint64_t id) {
    Impl::Ring& r = m.ring[static_cast<size_t>(k)];
    GPTOSS_ASSERT(r.outstanding > 0 && id < m.cost.size());
    --r.outstanding;
    r.load -= m.cost[id];
  };
  m.sch.on_finish = [&](Finished&& f) {
    settle(0, f.id);
    on_finish(std::move(f));
  };

  size_t next = 0;
  bool end_sent = false, stopped = false;
  std::vector<std::vector<int64_t>> work(static_cast<size_t>(R));
  auto feed = [&] {
    while (!stopped && next < todo.size()) {
      const int k = m.pick_ring();
      if (k < 0) break;
      Request& q = todo[next++];
      Impl::Ring& r = m.ring[static_cast<size_t>(k)];
      ++r.outstanding;
      ++r.prompts;
      r.load += m.cost[q.id];
      if (k == 0) {
        m.sch.submit(std::move(q));
        continue;
      }
      std::vector<int64_t>& w = work[static_cast<size_t>(k)];
      if (w.empty()) w.push_back(0);
      ++w[0];
      w.push_back(static_cast<int64_t>(q.id));
      w.push_back(q.max_new);
      w.push_back(static_cast<int64_t>(q.tokens.size()));
      w.insert(w.end(), q.tokens.begin(), q.tokens.end());
    }
    for (int k = 1; k < R; ++k) {
      if (work[k].empty()) continue;
      m.out.send(k, kWork, std::move(work[k]));
      work[k].clear();
    }
    if (!end_sent && (stopped || next == todo.size())) {
      for (int k = 1; k < R; ++k) m.out.send(k, kEnd, {});
      end_sent = true;
    }
  };
  auto check_stop = [&] {
    if (!stopped && stop && stop()) {
      stopped = true;
      for (int k = 1; k < R; ++k)
        if (!m.ring[k].done) m.out.send(k, kStop, {});
      feed();  // End, if not sent yet
    }
    return stopped;
  };
  std::vector<int64_t> words;
  auto poll = [&] {
    int from = 0, tag = 0;
    while (try_receive(m.leaders, MPI_ANY_SOURCE, from, tag, words)) {
      Impl::Ring& r = m.ring[static_cast<size_t>(from)];
      if (tag == kResult) {
        if (words.empty() || words[0] < 0 || static_cast<uint64_t>(words[0]) >= m.cost.size())
          fail("getp: ring %d sent a result for an unknown prompt", from);
        Finished f;
        f.id = static_cast<uint64_t>(words[0]);
        f.generated.assign(words.begin() + 1, words.end());
        settle(from, f.id);
        r.generated += f.generated.size();
        m.remote_generated += f.generated.size();
        on_finish(std::move(f));
      } else if (tag == kDone && words.size() == 3) {
        r.done = true;
        r.prompt_rows = static_cast<uint64_t>(words[1]);
      } else {
        fail("getp: ring %d sent an unexpected message (tag %d, %zu words)", from, tag,
             words.size());
      }
    }
    m.out.progress();
    feed();
  };
  auto remote_done = [&] {
    for (int k = 1; k < R; ++k)
      if (!m.ring[k].done) return false;
    return true;
  };

  feed();
  for (;;) {
    poll();
    if (!check_stop() && m.sch.busy()) {
      m.s.run(m.sch, check_stop, progress, poll);
      continue;
    }
    if (remote_done() && (stopped || !m.sch.busy())) break;
    if (progress) progress();
    nap();
  }
  for (int k = 1; k < R; ++k) m.out.send(k, kFinish, {});
  m.out.wait_all();
  todo.clear();
}

// ---- leaders of rings k > 0 ---------------------------------------------------------------------

int run_getp_ring_leader(const RunOptions& options) {
  const Rings& rg = rings();
  GPTOSS_ASSERT(rg.dp > 1 && rg.ring > 0 && rg.leader());
  Session s = open_leader_session(options);
  MPI_Comm L = rg.leaders;
  int mine = s.slots;
  MPI_Gather(&mine, 1, MPI_INT, nullptr, 0, MPI_INT, 0, L);  // collective
  RunOptions opt = options;
  uint64_t seed = 0;
  MPI_Bcast(&seed, 1, MPI_UINT64_T, 0, L);  // collective: the seed world rank 0 chose
  opt.seed = seed;
  Scheduler sch(ring_scheduler_options(opt, s), sampler_factory(opt));
  Outbox out(L);
  sch.on_finish = [&](Finished&& f) {
    std::vector<int64_t> w;
    w.reserve(f.generated.size() + 1);
    w.push_back(static_cast<int64_t>(f.id));
    w.insert(w.end(), f.generated.begin(), f.generated.end());
    out.send(0, kResult, std::move(w));
  };
  bool end = false, stop = false, finish = false, done_sent = false;
  std::vector<int64_t> words;
  auto poll = [&] {
    int from = 0, tag = 0;
    while (!finish && try_receive(L, 0, from, tag, words)) {
      switch (tag) {
        case kWork: {
          size_t i = 1;
          const int64_t count = words.empty() ? 0 : words[0];
          for (int64_t j = 0; j < count; ++j) {
            if (i + 3 > words.size()) fail("getp: a malformed work message from rank 0");
            Request q;
            q.id = static_cast<uint64_t>(words[i]);
            q.max_new = static_cast<int>(words[i + 1]);
            const size_t len = static_cast<size_t>(words[i + 2]);
            i += 3;
            if (i + len > words.size()) fail("getp: a malformed work message from rank 0");
            q.tokens.assign(words.begin() + static_cast<std::ptrdiff_t>(i),
                            words.begin() + static_cast<std::ptrdiff_t>(i + len));
            i += len;
            sch.submit(std::move(q));
          }
          break;
        }
        case kStop: stop = end = true; break;
        case kEnd: end = true; break;
        case kFinish: finish = true; break;
        default: fail("getp: an unexpected message from rank 0 (tag %d)", tag);
      }
    }
    out.progress();
  };
  auto stopping = [&] { return stop; };
  for (;;) {
    poll();
    if (!done_sent) {
      if (sch.busy() && !stop) {
        s.run(sch, stopping, {}, poll);
        continue;
      }
      if (end && (stop || !sch.busy())) {
        out.send(0, kDone,
                 {sch.busy() ? 1 : 0, static_cast<int64_t>(sch.stats().prompt_rows),
                  static_cast<int64_t>(sch.stats().generated)});
        done_sent = true;
      }
    }
    if (finish) break;
    nap();
  }
  out.wait_all();
  s.pipeline->finish();  // collective over the ring
  s.finished = true;
  return 0;
}

}  // namespace gptoss
