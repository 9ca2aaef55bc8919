// rings_jobs.h: work for R data-parallel rings (rings.h): getp's prompts and the server's
// requests. World rank 0 owns the inputs and the outputs (getp: OUT.partial, --resume, progress,
// getp_runner.h; serve: the HTTP side) and hands each request to a ring by load; ring 0 is its
// own, the leader (first rank) of every other ring runs that ring's scheduler on what it is given
// and sends back what it produced. A request samples with its own parameters and seed (getp:
// request_seed of the seed and the prompt's index), so nothing depends on R or on which ring ran
// a request.
//
// Messages (int64 words) on the leaders' communicator, rank 0 -> leader k:
//   Work   [count, then per request: id, max_new, temperature bits, top-p bits, top-k, seed,
//           length, tokens...]
//   Cancel [id]   (serve: the client went away, or the shutdown cut the request)
//   Stop   []     (getp: SIGINT/SIGTERM: what is in flight finishes, nothing more is planned)
//   End    []     (no more work will come)                       exactly one
//   Finish []     (after k's Done: leave)                         exactly one, last
// leader k -> rank 0:
//   Tokens [count, then per token: id, token]   (serve) after every committed step
//   Result [id, finish reason, tokens...]        per finished request (serve: no tokens: they
//                                                were streamed)
//   Done   [interrupted, prompt rows, generated tokens]   once, after End (or Stop) when idle
// MPI keeps the order of one sender's messages, so rank 0 has every Result before the Done and a
// leader has everything before the Finish: no message is left unmatched at the end.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "backend/sampler.h"
#include "run/getp_runner.h"
#include "run/options.h"

namespace gptoss {

struct Session;

// World rank 0's side of the other rings (1 .. R-1). The constructor is COLLECTIVE with
// run_ring_leader's start on the leaders' communicator: it learns every ring's slots (ring 0's
// are local_slots).
class OtherRings {
 public:
  explicit OtherRings(int local_slots);
  ~OtherRings();
  int count() const;  // R, ring 0 included
  int slots(int ring) const;
  int outstanding(int ring) const;  // given and not finished (rings > 0)
  size_t outstanding() const;       // of every other ring
  // Queues a request for ring k > 0 (sent by flush()).
  void submit(int ring, const Request& r, const SamplerParams& p);
  void flush();
  // True if request `id` is on another ring (its Cancel is sent).
  bool cancel(uint64_t id);
  void stop();  // Stop to every ring not done (getp)
  void end();   // End to every ring (once)
  // What has arrived: tokens (serve) and finished requests, in order; false if nothing did.
  bool poll(const std::function<void(uint64_t, int32_t)>& on_token,
            const std::function<void(int ring, Finished&&)>& on_finish);
  bool all_done() const;  // every ring's Done has arrived (after end())
  // After all_done(): Finish to every ring; waits for the sends.
  void finish();
  uint64_t prompt_rows() const;  // from the Done messages
  uint64_t generated(int ring) const;
  size_t given(int ring) const;  // requests handed to ring k > 0

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// getp on rank 0: a RequestRunner that feeds ring 0's scheduler and the other rings by load.
class RingsRunner : public RequestRunner {
 public:
  RingsRunner(Session& s, const SchedulerOptions& so, const ChooserFactory& chooser,
              uint64_t seed, const RunOptions& opt);
  ~RingsRunner() override;
  void run(std::vector<Request>& todo, const std::function<void(Finished&&)>& on_finish,
           const std::function<bool()>& stop, const std::function<void()>& progress) override;
  uint64_t generated() const override;
  uint64_t prompt_rows() const override;
  // "prompts per ring 3, 2; tokens generated per ring 36, 24"
  std::string summary() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// The leader of ring k > 0 (getp and serve): loads its ring, runs what world rank 0 sends,
// returns 0 when rank 0 says Finish (the ring is ended, COLLECTIVE over the ring, before).
int run_ring_leader(const RunOptions& opt);

}  // namespace gptoss
