// session.cpp: loading and describing model, tokenizer and engine; per-request samplers.
#include "run/session.h"

#include <chrono>
#include <cstdio>

#include "common/error.h"
#ifdef GPTOSS_HAVE_GPU
#include "engine_gpu/gpu_engine.h"
#endif

namespace gptoss {

double now_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

uint64_t request_seed(uint64_t seed, uint64_t id) {
  uint64_t z = seed + 0x9E3779B97F4A7C15ull * (id + 1);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

namespace {
class SamplerChooser : public TokenChooser {
 public:
  explicit SamplerChooser(const SamplerParams& p) : s_(p) {}
  int32_t choose(const float* logits, int vocab) override { return s_.sample(logits, vocab); }

 private:
  Sampler s_;
};
}  // namespace

ChooserFactory sampler_factory(const RunOptions& opt) {
  SamplerParams base;
  base.temperature = opt.temperature;
  base.top_k = opt.top_k;
  base.top_p = opt.top_p;
  base.seed = opt.seed;
  return [base](uint64_t id) -> std::unique_ptr<TokenChooser> {
    SamplerParams p = base;
    p.seed = request_seed(base.seed, id);
    return std::make_unique<SamplerChooser>(p);
  };
}

std::unique_ptr<Tokenizer> load_tokenizer(const RunOptions& opt, double* load_s) {
  double t0 = now_seconds();
  auto tok = std::make_unique<Tokenizer>(opt.tokenizer_path);
  if (load_s) *load_s = now_seconds() - t0;
  return tok;
}

Session open_session(const RunOptions& opt, int slots, std::unique_ptr<Tokenizer> tok,
                     double tok_load_s) {
  Session s;
  double t0 = now_seconds() - tok_load_s;
  s.model = std::make_unique<ModelFile>(opt.model_path);
  const Config& c = s.model->config();
  check_against_model(opt, c);
  s.tokenizer = tok ? std::move(tok) : load_tokenizer(opt);
  if (s.tokenizer->vocab_size() != c.vocab)
    fail("%s: the tokenizer has %d ids but the model %s has a vocabulary of %d",
         opt.tokenizer_path.c_str(), s.tokenizer->vocab_size(), opt.model_path.c_str(), c.vocab);
  EngineOptions eo;
  eo.ctx = opt.ctx;
  eo.max_slots = slots;
  eo.threads = opt.threads;
  eo.backend = opt.backend;
#ifdef GPTOSS_HAVE_GPU
  if (eo.backend == "auto") eo.backend = gpu_device_present() ? "gpu" : "cpu";
  if (eo.backend == "gpu")
    s.engine = make_gpu_engine(*s.model, eo);
  else
    s.engine = make_cpu_engine(*s.model, eo);
#else
  eo.backend = "cpu";
  s.engine = make_cpu_engine(*s.model, eo);
#endif
  s.backend = eo.backend;
  s.load_s = now_seconds() - t0;

  std::fprintf(stderr, "model: %s (%s)\n", s.model->description().c_str(), opt.model_path.c_str());
  std::fprintf(stderr,
               "config: %d layers, hidden %d, %d heads (%d kv) x %d, %d experts (top %d), "
               "vocab %d, window %d, max context %d\n",
               c.n_layers, c.hidden, c.n_heads, c.n_kv_heads, c.head_dim, c.n_experts,
               c.experts_per_tok, c.vocab, c.sliding_window, c.max_context);
  std::fprintf(stderr, "loaded in %.2f s; KV cache %.1f MiB (%d slot%s x %d positions); backend %s\n",
               s.load_s, static_cast<double>(s.engine->kv_cache_bytes()) / (1024.0 * 1024.0), slots,
               slots == 1 ? "" : "s", opt.ctx, s.backend.c_str());
  return s;
}

}  // namespace gptoss
