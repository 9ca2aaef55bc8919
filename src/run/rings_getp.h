// rings_getp.h: getp over R data-parallel rings (rings.h). World rank 0 owns the prompts and OUT
// (getp_runner.h: OUT.partial, --resume, progress) and hands prompts to the rings by load; ring 0
// is its own, the leaders of the others run their ring's scheduler on what they are given and
// send each finished prompt back. A prompt samples with its own stream (request_seed of the seed
// and its index), so OUT does not depend on R or on which ring ran a prompt.
//
// Messages on the leaders' communicator (int64 words), rank 0 -> leader k:
//   Work  [count, then per prompt: id, max_new, length, tokens...]   any number
//   Stop  []   (SIGINT/SIGTERM: finish what is in flight, take no more)  at most one
//   End   []   (no more work will come)                                  exactly one
//   Finish []  (after k's Done: leave the loop)                          exactly one, last
// leader k -> rank 0:
//   Result [id, tokens...]  per finished prompt
//   Done   [interrupted, prompt rows, generated tokens]  once, after End (or Stop) when idle
// MPI keeps the order of one sender's messages, so rank 0 has every Result before the Done and a
// leader has everything before the Finish: no message is left unmatched at the end.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "run/getp_runner.h"
#include "run/options.h"

namespace gptoss {

struct Session;

// World rank 0. The constructor is COLLECTIVE with run_getp_ring_leader's start on the leaders'
// communicator: it learns every ring's slots and gives the leaders the sampling seed.
class RingsRunner : public RequestRunner {
 public:
  RingsRunner(Session& s, const SchedulerOptions& so, const ChooserFactory& chooser, uint64_t seed);
  ~RingsRunner() override;
  void run(std::vector<Request>& todo, const std::function<void(Finished&&)>& on_finish,
           const std::function<bool()>& stop, const std::function<void()>& progress) override;
  uint64_t generated() const override;
  uint64_t prompt_rows() const override;
  // "prompts per ring 3, 2; generated 36, 24"
  std::string summary() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// The leader of ring k > 0 in getp: loads its ring, runs what world rank 0 sends, returns 0 when
// rank 0 says Finish (the ring is ended, COLLECTIVE over the ring, before it returns).
int run_getp_ring_leader(const RunOptions& opt);

}  // namespace gptoss
