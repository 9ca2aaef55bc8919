// rings_jobs.cpp: work for data-parallel rings (rings_jobs.h).
#include "run/rings_jobs.h"

#include <mpi.h>
#include <time.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <list>
#include <map>
#include <utility>

#include "common/error.h"
#include "pipeline/pipeline.h"
#include "run/rings.h"
#include "run/session.h"

namespace gptoss {

namespace {

enum Tag : int { kWork = 1, kCancel, kStop, kEnd, kFinish, kTokens, kResult, kDone };

// Idle waits sleep, so waiting ranks take no CPU from the working ones: 0.2 ms at first, up to
// 2 ms after a while without news.
class Napper {
 public:
  void nap() {
    const long ns = idle_ < 50 ? 200'000 : 2'000'000;
    ++idle_;
    const timespec ts{0, ns};
    nanosleep(&ts, nullptr);
  }
  void woke() { idle_ = 0; }

 private:
  int idle_ = 0;
};

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

int64_t float_word(float f) {
  uint32_t u = 0;
  std::memcpy(&u, &f, sizeof u);
  return static_cast<int64_t>(u);
}
float word_float(int64_t w) {
  const uint32_t u = static_cast<uint32_t>(w);
  float f = 0;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

// The collective start: every leader tells rank 0 its slots (rank 0 gets them all, ring order).
std::vector<int> gather_slots(int mine) {
  const Rings& r = rings();
  std::vector<int> slots(r.world_rank == 0 ? static_cast<size_t>(r.dp) : 1);
  MPI_Gather(&mine, 1, MPI_INT, slots.data(), 1, MPI_INT, 0, r.leaders);  // collective
  return slots;
}

SamplerParams params_of(const RunOptions& opt, uint64_t seed) {
  SamplerParams p;
  p.temperature = opt.temperature;
  p.top_k = opt.top_k;
  p.top_p = opt.top_p;
  p.seed = seed;
  return p;
}

}  // namespace

// ---- world rank 0: the other rings ------------------------------------------------------------

struct OtherRings::Impl {
  MPI_Comm leaders = gptoss::rings().leaders;
  Outbox out{gptoss::rings().leaders};
  struct Ring {
    int slots = 1;
    int outstanding = 0;
    size_t given = 0;
    uint64_t generated = 0, prompt_rows = 0;
    bool done = false;
    std::vector<int64_t> work;  // queued Work words (work[0] = count)
  };
  std::vector<Ring> ring;
  std::map<uint64_t, int> where;  // request id -> ring (outstanding on rings > 0)
  bool ended = false, stopped = false, finished = false;
  std::vector<int64_t> words;
};

OtherRings::OtherRings(int local_slots) : impl_(std::make_unique<Impl>()) {
  const Rings& r = gptoss::rings();
  GPTOSS_ASSERT(r.world_rank == 0 && r.dp > 1 && r.leaders != MPI_COMM_NULL);
  const std::vector<int> slots = gather_slots(local_slots);
  impl_->ring.resize(slots.size());
  for (size_t k = 0; k < slots.size(); ++k) impl_->ring[k].slots = std::max(1, slots[k]);
}
OtherRings::~OtherRings() = default;

int OtherRings::count() const { return static_cast<int>(impl_->ring.size()); }
int OtherRings::slots(int k) const { return impl_->ring[static_cast<size_t>(k)].slots; }
int OtherRings::outstanding(int k) const { return impl_->ring[static_cast<size_t>(k)].outstanding; }
size_t OtherRings::outstanding() const { return impl_->where.size(); }
uint64_t OtherRings::generated(int k) const { return impl_->ring[static_cast<size_t>(k)].generated; }
size_t OtherRings::given(int k) const { return impl_->ring[static_cast<size_t>(k)].given; }

uint64_t OtherRings::prompt_rows() const {
  uint64_t n = 0;
  for (const auto& r : impl_->ring) n += r.prompt_rows;
  return n;
}

bool OtherRings::all_done() const {
  for (size_t k = 1; k < impl_->ring.size(); ++k)
    if (!impl_->ring[k].done) return false;
  return true;
}

void OtherRings::submit(int k, const Request& q, const SamplerParams& p) {
  GPTOSS_ASSERT(k > 0 && k < count() && !impl_->ended);
  Impl::Ring& r = impl_->ring[static_cast<size_t>(k)];
  ++r.outstanding;
  ++r.given;
  impl_->where[q.id] = k;
  std::vector<int64_t>& w = r.work;
  if (w.empty()) w.push_back(0);
  ++w[0];
  w.insert(w.end(), {static_cast<int64_t>(q.id), q.max_new, float_word(p.temperature),
                     float_word(p.top_p), p.top_k, static_cast<int64_t>(p.seed),
                     static_cast<int64_t>(q.tokens.size())});
  w.insert(w.end(), q.tokens.begin(), q.tokens.end());
}

void OtherRings::flush() {
  for (size_t k = 1; k < impl_->ring.size(); ++k) {
    std::vector<int64_t>& w = impl_->ring[k].work;
    if (w.empty()) continue;
    impl_->out.send(static_cast<int>(k), kWork, std::move(w));
    w.clear();
  }
  impl_->out.progress();
}

bool OtherRings::cancel(uint64_t id) {
  auto it = impl_->where.find(id);
  if (it == impl_->where.end()) return false;
  flush();  // its Work goes first
  impl_->out.send(it->second, kCancel, {static_cast<int64_t>(id)});
  return true;
}

void OtherRings::stop() {
  if (impl_->stopped) return;
  impl_->stopped = true;
  flush();
  for (size_t k = 1; k < impl_->ring.size(); ++k)
    if (!impl_->ring[k].done) impl_->out.send(static_cast<int>(k), kStop, {});
}

void OtherRings::end() {
  if (impl_->ended) return;
  flush();
  impl_->ended = true;
  for (size_t k = 1; k < impl_->ring.size(); ++k) impl_->out.send(static_cast<int>(k), kEnd, {});
}

bool OtherRings::poll(const std::function<void(uint64_t, int32_t)>& on_token,
                      const std::function<void(int, Finished&&)>& on_finish) {
  Impl& m = *impl_;
  m.out.progress();
  bool any = false;
  int from = 0, tag = 0;
  while (try_receive(m.leaders, MPI_ANY_SOURCE, from, tag, m.words)) {
    any = true;
    const std::vector<int64_t>& w = m.words;
    Impl::Ring& r = m.ring[static_cast<size_t>(from)];
    if (tag == kTokens) {
      const size_t n = w.empty() ? 0 : static_cast<size_t>(w[0]);
      if (w.size() != 1 + 2 * n) fail("rings: ring %d sent a malformed token message", from);
      for (size_t i = 0; i < n; ++i) {
        ++r.generated;
        if (on_token) on_token(static_cast<uint64_t>(w[1 + 2 * i]), static_cast<int32_t>(w[2 + 2 * i]));
      }
    } else if (tag == kResult) {
      auto it = w.size() >= 2 ? m.where.find(static_cast<uint64_t>(w[0])) : m.where.end();
      if (it == m.where.end() || it->second != from)
        fail("rings: ring %d sent a result for a request it does not hold", from);
      m.where.erase(it);
      --r.outstanding;
      Finished f;
      f.id = static_cast<uint64_t>(w[0]);
      f.reason = static_cast<FinishReason>(w[1]);
      f.generated.assign(w.begin() + 2, w.end());
      r.generated += f.generated.size();
      on_finish(from, std::move(f));
    } else if (tag == kDone && w.size() == 3) {
      r.done = true;
      r.prompt_rows = static_cast<uint64_t>(w[1]);
    } else {
      fail("rings: ring %d sent an unexpected message (tag %d, %zu words)", from, tag, w.size());
    }
  }
  return any;
}

void OtherRings::finish() {
  if (impl_->finished) return;
  impl_->finished = true;
  for (size_t k = 1; k < impl_->ring.size(); ++k) impl_->out.send(static_cast<int>(k), kFinish, {});
  impl_->out.wait_all();
}

// ---- getp on rank 0 -----------------------------------------------------------------------------

struct RingsRunner::Impl {
  Session& s;
  Scheduler sch;  // ring 0's
  OtherRings others;
  RunOptions opt;
  uint64_t seed;
  size_t local_given = 0;
  std::vector<uint64_t> cost;  // by request id: prompt + max_new tokens
  std::vector<uint64_t> load;  // by ring: outstanding cost
  Impl(Session& s_, const SchedulerOptions& so, const ChooserFactory& chooser,
       const RunOptions& o, uint64_t sd)
      : s(s_), sch(so, chooser), others(s_.slots), opt(o), seed(sd) {}
};

RingsRunner::RingsRunner(Session& s, const SchedulerOptions& so, const ChooserFactory& chooser,
                         uint64_t seed, const RunOptions& opt)
    : impl_(std::make_unique<Impl>(s, so, chooser, opt, seed)) {
  impl_->load.assign(static_cast<size_t>(impl_->others.count()), 0);
}

RingsRunner::~RingsRunner() = default;

uint64_t RingsRunner::generated() const {
  uint64_t n = impl_->sch.stats().generated;
  for (int k = 1; k < impl_->others.count(); ++k) n += impl_->others.generated(k);
  return n;
}

uint64_t RingsRunner::prompt_rows() const {
  return impl_->sch.stats().prompt_rows + impl_->others.prompt_rows();
}

std::string RingsRunner::summary() const {
  std::string p, g;
  for (int k = 0; k < impl_->others.count(); ++k) {
    const size_t given = k == 0 ? impl_->local_given : impl_->others.given(k);
    const uint64_t gen = k == 0 ? impl_->sch.stats().generated : impl_->others.generated(k);
    p += strfmt("%s%zu", k ? ", " : "", given);
    g += strfmt("%s%llu", k ? ", " : "", (unsigned long long)gen);
  }
  return "prompts per ring " + p + "; tokens generated per ring " + g;
}

void RingsRunner::run(std::vector<Request>& todo, const std::function<void(Finished&&)>& on_finish,
                      const std::function<bool()>& stop, const std::function<void()>& progress) {
  Impl& m = *impl_;
  OtherRings& o = m.others;
  const int R = o.count();
  for (const Request& q : todo) {
    if (q.id >= m.cost.size()) m.cost.resize(q.id + 1, 0);
    m.cost[q.id] = q.tokens.size() + static_cast<uint64_t>(q.max_new);
  }
  int local_outstanding = 0;
  m.sch.on_finish = [&](Finished&& f) {
    --local_outstanding;
    m.load[0] -= m.cost[f.id];
    on_finish(std::move(f));
  };
  // A ring takes the next prompt while it has fewer outstanding than its slots (the other rings:
  // plus a few queued ahead, so a slot freed there is refilled without a round trip to rank 0);
  // of those, the one with the least outstanding prompt + max-new tokens.
  auto pick = [&] {
    int best = -1;
    for (int k = 0; k < R; ++k) {
      const int slots = o.slots(k);
      const int have = k == 0 ? local_outstanding : o.outstanding(k);
      const int cap = k == 0 ? slots : slots + std::max(2, slots / 4);
      if (have >= cap) continue;
      if (best < 0 || m.load[static_cast<size_t>(k)] < m.load[static_cast<size_t>(best)]) best = k;
    }
    return best;
  };
  size_t next = 0;
  bool stopped = false;
  auto feed = [&] {
    while (!stopped && next < todo.size()) {
      const int k = pick();
      if (k < 0) break;
      Request& q = todo[next++];
      m.load[static_cast<size_t>(k)] += m.cost[q.id];
      if (k == 0) {
        ++local_outstanding;
        ++m.local_given;
        m.sch.submit(std::move(q));
      } else {
        o.submit(k, q, params_of(m.opt, request_seed(m.seed, q.id)));
      }
    }
    o.flush();
    if (stopped || next == todo.size()) o.end();
  };
  auto check_stop = [&] {
    if (!stopped && stop && stop()) {
      stopped = true;
      o.stop();
      o.end();
    }
    return stopped;
  };
  auto poll = [&] {
    o.poll({}, [&](int k, Finished&& f) {
      m.load[static_cast<size_t>(k)] -= m.cost[f.id];
      on_finish(std::move(f));
    });
    feed();
  };
  Napper napper;
  feed();
  for (;;) {
    poll();
    if (!check_stop() && m.sch.busy()) {
      m.s.run(m.sch, check_stop, progress, poll);
      napper.woke();
      continue;
    }
    if (o.all_done() && (stopped || !m.sch.busy())) break;
    if (progress) progress();
    napper.nap();
  }
  o.finish();
  todo.clear();
}

// ---- leaders of rings k > 0 ---------------------------------------------------------------------

int run_ring_leader(const RunOptions& opt) {
  const Rings& rg = rings();
  GPTOSS_ASSERT(rg.dp > 1 && rg.ring > 0 && rg.leader());
  const bool streaming = opt.mode == Mode::Serve;
  Session s = open_leader_session(opt);
  MPI_Comm L = rg.leaders;
  gather_slots(s.slots);  // collective
  const SchedulerOptions so = s.scheduler_options(opt);
  std::map<uint64_t, SamplerParams> params;  // of the requests given and not finished
  Scheduler sch(so, [&params](uint64_t id) -> std::unique_ptr<TokenChooser> {
    auto it = params.find(id);
    GPTOSS_ASSERT(it != params.end());
    return std::make_unique<SamplerChooser>(it->second);
  });
  Outbox out(L);
  std::vector<int64_t> tokens{0};  // Tokens words of the step being committed
  if (streaming)
    sch.on_token = [&](uint64_t id, int32_t t) {
      ++tokens[0];
      tokens.push_back(static_cast<int64_t>(id));
      tokens.push_back(t);
    };
  auto flush_tokens = [&] {
    if (tokens[0] == 0) return;
    out.send(0, kTokens, std::move(tokens));
    tokens.assign(1, 0);
  };
  sch.on_finish = [&](Finished&& f) {
    flush_tokens();  // a request's tokens before its end
    params.erase(f.id);
    std::vector<int64_t> w;
    w.reserve(2 + (streaming ? 0 : f.generated.size()));
    w.push_back(static_cast<int64_t>(f.id));
    w.push_back(static_cast<int64_t>(f.reason));
    if (!streaming)
      for (int32_t t : f.generated) w.push_back(t);
    out.send(0, kResult, std::move(w));
  };
  bool end = false, stop = false, finish = false, done_sent = false;
  std::vector<int64_t> words;
  auto bad = [] { fail("rings: a malformed work message from rank 0"); };
  auto poll = [&] {
    int from = 0, tag = 0;
    bool any = false;
    while (!finish && try_receive(L, 0, from, tag, words)) {
      any = true;
      switch (tag) {
        case kWork: {
          size_t i = 1;
          const int64_t count = words.empty() ? 0 : words[0];
          for (int64_t j = 0; j < count; ++j) {
            if (i + 7 > words.size()) bad();
            Request q;
            q.id = static_cast<uint64_t>(words[i]);
            q.max_new = static_cast<int>(words[i + 1]);
            SamplerParams p;
            p.temperature = word_float(words[i + 2]);
            p.top_p = word_float(words[i + 3]);
            p.top_k = static_cast<int>(words[i + 4]);
            p.seed = static_cast<uint64_t>(words[i + 5]);
            const size_t len = static_cast<size_t>(words[i + 6]);
            i += 7;
            if (i + len > words.size()) bad();
            q.tokens.assign(words.begin() + static_cast<std::ptrdiff_t>(i),
                            words.begin() + static_cast<std::ptrdiff_t>(i + len));
            i += len;
            params[q.id] = p;
            sch.submit(std::move(q));
          }
          break;
        }
        case kCancel:
          if (!words.empty()) sch.cancel(static_cast<uint64_t>(words[0]));
          break;
        case kStop: stop = end = true; break;
        case kEnd: end = true; break;
        case kFinish: finish = true; break;
        default: fail("rings: an unexpected message from rank 0 (tag %d)", tag);
      }
    }
    out.progress();
    return any;
  };
  auto stopping = [&] { return stop; };
  Napper napper;
  for (;;) {
    if (poll()) napper.woke();
    if (!done_sent) {
      if (sch.busy() && !stop) {
        s.run(sch, stopping, flush_tokens, [&] { poll(); });
        flush_tokens();
        napper.woke();
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
    napper.nap();
  }
  out.wait_all();
  s.pipeline->finish();  // collective over the ring
  s.finished = true;
  return 0;
}

}  // namespace gptoss
