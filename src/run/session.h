// session.h: what every mode of `run` starts with: the model file, the tokenizer and an engine,
// loaded and described on stderr (model description, config, load time, KV-cache memory); and
// the per-request sampler used by the scheduler.
#pragma once
#include <memory>

#include "engine/engine.h"
#include "engine/sampler.h"
#include "model/model_file.h"
#include "run/options.h"
#include "run/scheduler.h"
#include "tokenizer/tokenizer.h"

namespace gptoss {

struct Session {
  std::unique_ptr<ModelFile> model;
  std::unique_ptr<Tokenizer> tokenizer;
  std::unique_ptr<Engine> engine;
  double load_s = 0;  // model + tokenizer + engine set-up, seconds
  std::string backend;  // "cpu" or "gpu": what --backend resolved to
};

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
