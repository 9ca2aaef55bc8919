// session.h: what every mode of `run` starts with: the model file, the tokenizer and the ring
// pipeline (src/pipeline: rank 0's backend plus the other ranks' backends; one process is a ring
// of one, the same code), loaded and described on stderr (model description, config, load time,
// KV-cache memory; with several ranks the layer split and the links); and the per-request sampler
// used by the scheduler. Ranks > 0 run run_stage_worker() instead: model file and their backend
// only, no tokenizer. Backends: the CPU on every rank, or (GPU builds, --backend gpu or auto with a
// GPU) the GPU backend, one GPU per rank.
#pragma once
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "comm/stage_timing.h"
#include "backend/sampler.h"
#include "model/model_file.h"
#include "run/options.h"
#include "sched/scheduler.h"
#include "tokenizer/tokenizer.h"

namespace gptoss {

class Pipeline;

struct Session {
  Session();
  Session(Session&&) noexcept;
  ~Session();
  std::unique_ptr<ModelFile> model;
  std::unique_ptr<Tokenizer> tokenizer;
  std::unique_ptr<Pipeline> pipeline;  // the ring (CPU or GPU backends); one rank: a ring of one
  double load_s = 0;  // model + tokenizer + backend set-up, seconds
  std::string backend;  // "cpu" or "gpu": what --backend resolved to
  int ranks = 1, micro_batches = 1;
  // The per-step token budget the modes use: --chunk, or the backend's default (CPU 256; GPU
  // --step-rows (512), one device step: its steps cost little more at 512 rows than at 256, so
  // bigger is faster; a GPU ring that per micro-batch in flight).
  int chunk_tokens = 256;
  // Concurrent sequences (KV-cache slots): the slots asked for, or for getp on the GPU without -b
  // as many as the GPU's free memory holds at -c (at most 1024 on one GPU, else 256 per
  // micro-batch in flight; serve 256).
  int slots = 1;
  // The paged KV cache (SchedulerOptions): positions per block (0: not paged) and pool blocks.
  int kv_block_tokens = 0, kv_blocks = 0;

  // The scheduler of every mode over this session: `slots` sequences (0 = the session's slots),
  // its step budget, -c, the stop ids and --ignore-eos.
  SchedulerOptions scheduler_options(const RunOptions& opt, int slots = 0) const;

  // Runs the scheduler until it is idle or should_stop() (work in flight still finishes).
  // before_plan() runs before each planning round (Pipeline::run): requests submitted or
  // cancelled there join or leave the running batch.
  void run(Scheduler& sch, const std::function<bool()>& should_stop = {},
           const std::function<void()>& after_commit = {},
           const std::function<void()>& before_plan = {});
  // Ends the ring (COLLECTIVE: every rank's session or worker must reach it), prints the
  // per-stage report on stderr (several ranks) and returns busy % per stage (rank 0 first).
  // Idempotent.
  std::vector<double> finish();
  std::vector<double> busy_pct;
  bool finished = false;
};

// Ranks > 0: load the model, own stage, serve micro-batches until rank 0 ends the ring.
int run_stage_worker(const RunOptions& opt);
// The leader of a data-parallel ring k > 0 (rings.h): model and ring, no tokenizer, nothing
// printed.
Session open_leader_session(const RunOptions& opt);
// The ranks of rings k > 0 in modes that use ring 0 only: the world's model check, nothing loaded.
int run_idle_ring(const RunOptions& opt);

// COLLECTIVE over the world, before make_rings: the number of rings (--dp, else the automatic
// shape of shape.h from the model, the backend and every rank's free GPU memory) and why, the
// same on every rank (rank 0 decides).
std::pair<int, std::string> plan_rings(const RunOptions& opt);

// getp without -b reserves no more KV-cache slots than it has prompts. Rank 0 passes the prompt
// count it has read; with several ranks it sends it to every rank, which passes 0 (COLLECTIVE
// over the world for getp without -b: every getp rank calls it before its ring opens, so every
// rank sizes its KV cache alike). Other modes and -b: nothing.
void cap_getp_slots(RunOptions& opt, size_t prompts);

// Loads the tokenizer (-z) alone, so a mode can check its input before loading the model.
std::unique_ptr<Tokenizer> load_tokenizer(const RunOptions& opt, double* load_s = nullptr);
// Loads everything for `slots` concurrent sequences and prints the start-up summary on stderr.
// A tokenizer already loaded by load_tokenizer() may be passed in (its load time is counted).
Session open_session(const RunOptions& opt, int slots, std::unique_ptr<Tokenizer> tok = nullptr,
                     double tok_load_s = 0);

// The seed of request `id`: a splitmix64 mix of (seed, id), so each prompt has its own
// reproducible stream whatever runs beside it.
uint64_t request_seed(uint64_t seed, uint64_t id);
// Factory for the scheduler: a Sampler per request with -T/-p/--top-k and request_seed().
ChooserFactory sampler_factory(const RunOptions& opt);

// Seconds on a monotonic clock.
double now_seconds();

}  // namespace gptoss
