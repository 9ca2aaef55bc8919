// engine_loop.h: the engine thread of the server (rank 0's main thread). It owns the Scheduler
// (continuous batching, the same one as getp): jobs from the Inbox join the running batch between
// micro-batches, cancellations free their slots, every generated token goes to its job's stream.
// Each request samples with its own parameters (temperature, top-p, top-k, seed) through a
// per-request Sampler, so a request's tokens do not depend on what runs beside it.
//
// Shutdown (stop_level(): 0 serve, 1 drain, 2 cut): at 1 the inbox closes (the HTTP side answers
// 503) and requests in flight get `grace_s` seconds to finish; at 2, or when the grace is over,
// every request still running is cancelled (its client gets the end it is owed); run() returns
// when nothing is left in flight, with the number of requests it cut.
#pragma once
#include <functional>
#include <map>
#include <memory>

#include "sched/scheduler.h"
#include "serve/bridge.h"
#include "serve/metrics.h"

namespace gptoss::serve {

// Session::run's shape: runs the scheduler until idle or should_stop(), calling before_plan()
// before each planning round and after_commit() after each committed step.
using RunScheduler = std::function<void(Scheduler& sch, const std::function<bool()>& should_stop,
                                        const std::function<void()>& after_commit,
                                        const std::function<void()>& before_plan)>;

// Rings other than the server's own (data-parallel rings: src/run/rings_jobs.h, run --dp): a
// request may run there instead of on the local scheduler; its tokens and its end come back
// through poll().
class Elsewhere {
 public:
  virtual ~Elsewhere() = default;
  // Where the next request goes, given the requests the local scheduler holds: 0 = here, k > 0 =
  // ring k.
  virtual int place(int local_held) = 0;
  virtual void submit(int ring, const Request& r, const SamplerParams& p) = 0;
  virtual bool cancel(uint64_t id) = 0;  // false: not elsewhere
  virtual bool poll(const std::function<void(uint64_t, int32_t)>& on_token,
                    const std::function<void(Finished&&)>& on_finish) = 0;
  virtual size_t outstanding() const = 0;  // requests elsewhere, not finished
};

class EngineLoop {
 public:
  // default_seed(id): the seed of a request that gave none. elsewhere (may be null): other
  // rings that take a share of the requests.
  EngineLoop(Inbox& inbox, Metrics& metrics, std::function<uint64_t(uint64_t)> default_seed,
             Elsewhere* elsewhere = nullptr);
  // The scheduler's chooser factory: a Sampler with the request's own parameters.
  ChooserFactory chooser_factory();
  size_t run(Scheduler& sch, const RunScheduler& run_scheduler,
             const std::function<int()>& stop_level, double grace_s);

 private:
  void admit(Scheduler& sch);
  void update_gauges(Scheduler& sch);
  void token(uint64_t id, int32_t t);
  void finished(Finished&& f);
  bool busy(const Scheduler& sch) const;

  Inbox& inbox_;
  Metrics& metrics_;
  std::function<uint64_t(uint64_t)> default_seed_;
  Elsewhere* elsewhere_ = nullptr;
  std::map<uint64_t, SamplerParams> params_;                  // by request id
  std::map<uint64_t, std::shared_ptr<TokenStream>> streams_;  // requests admitted, not finished
  std::vector<Job> jobs_;
  std::vector<uint64_t> cancels_;
  bool closing_ = false;
};

}  // namespace gptoss::serve
