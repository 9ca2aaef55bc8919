// mode_bench.cpp: `run MODEL -m bench`: throughput in the spirit of llama-bench, through the same
// session, pipeline and scheduler as the other modes (any number of ranks).
//   pp<P>       one prompt of P random tokens (--pp, default 512), prefilled in chunks of --chunk
//               rows, batch 1; prompt tok/s.
//   tg<N>       N decode steps at batch 1 (-n, default 128) after a 1-token prompt; tok/s.
//   getp        -b sequences (default 32), each a synthetic prompt of --getp-prompt random tokens
//               (default 1024) generating --getp-new tokens (default 1024, --ignore-eos implied,
//               greedy), run through the same continuous-batching scheduler as -m getp; output
//               (generated) tok/s over the whole run, prefill included.
// Each test runs once as warm-up, then -r times (default 3); reported as mean +- sample std of
// tok/s. Output (stdout) as --format md (default) | csv | json; progress on stderr.
// Small values (-n 8 --pp 32 --getp-prompt 16 --getp-new 8 -b 2) make it usable on the CPU backend.
#include <cmath>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "common/error.h"
#include "run/modes.h"
#include "run/session.h"

namespace gptoss {

namespace {

struct BenchResult {
  std::string test;
  int batch = 1;
  std::vector<double> tok_s;
  double mean() const {
    double s = 0;
    for (double v : tok_s) s += v;
    return tok_s.empty() ? 0 : s / tok_s.size();
  }
  double stddev() const {
    if (tok_s.size() < 2) return 0;
    const double m = mean();
    double s = 0;
    for (double v : tok_s) s += (v - m) * (v - m);
    return std::sqrt(s / (tok_s.size() - 1));
  }
};

std::vector<int32_t> random_tokens(std::mt19937_64& rng, int n, int vocab) {
  // Ids below 199998 (the special tokens live at the top of o200k_harmony's range).
  const uint32_t hi = static_cast<uint32_t>(std::min(vocab, 199998));
  std::vector<int32_t> t(static_cast<size_t>(n));
  for (auto& v : t) v = static_cast<int32_t>(rng() % hi);
  return t;
}

// A scheduler over the session for `slots` sequences, greedy, ignoring end-of-sequence tokens.
Scheduler bench_scheduler(const Session& s, const RunOptions& opt, int slots) {
  SchedulerOptions so;
  so.max_slots = slots;
  so.chunk_tokens = s.chunk_tokens;
  so.ctx = opt.ctx;
  so.stop_ids = opt.stop_ids;
  so.ignore_eos = true;
  RunOptions greedy = opt;
  greedy.temperature = 0.0f;
  return Scheduler(so, sampler_factory(greedy));
}

// One prompt of n tokens prefilled in chunks of --chunk rows, batch 1, up to its first token;
// seconds.
double time_pp(Session& s, const RunOptions& opt, const std::vector<int32_t>& prompt) {
  Scheduler sch = bench_scheduler(s, opt, 1);
  sch.on_finish = [](Finished&&) {};
  sch.submit(Request{0, prompt, 1, 0, -1});
  const double t0 = now_seconds();
  s.run(sch);
  return now_seconds() - t0;
}

// A 1-token prompt, then n greedy decode steps at batch 1 (the token chosen where the backend
// chooses: on the device for the GPU); seconds for the n steps after the first token.
double time_tg(Session& s, const RunOptions& opt, int first_token, int n) {
  Scheduler sch = bench_scheduler(s, opt, 1);
  double t_first = 0;
  int got = 0;
  sch.on_token = [&](uint64_t, int32_t) {
    if (got++ == 0) t_first = now_seconds();
  };
  sch.on_finish = [](Finished&&) {};
  sch.submit(Request{0, {first_token}, n + 1, 0, -1});
  s.run(sch);
  return now_seconds() - t_first;
}

// getp-style: B requests through the scheduler; returns {seconds, generated tokens}.
std::pair<double, uint64_t> time_getp(Session& s, const RunOptions& opt, int B, int prompt_n,
                                      int new_n, std::mt19937_64& rng) {
  Scheduler sch = bench_scheduler(s, opt, B);
  uint64_t generated = 0;
  sch.on_token = [&](uint64_t, int32_t) { ++generated; };
  sch.on_finish = [](Finished&&) {};
  const int V = s.model->config().vocab;
  for (int b = 0; b < B; ++b)
    sch.submit(Request{uint64_t(b), random_tokens(rng, prompt_n, V), new_n, 0, -1});
  const double t0 = now_seconds();
  s.run(sch);
  return {now_seconds() - t0, generated};
}

}  // namespace

int run_bench(const RunOptions& opt) {
  if (opt.bench_pp + 1 > opt.ctx || opt.max_new + 1 > opt.ctx ||
      opt.bench_getp_prompt + opt.bench_getp_new > opt.ctx)
    fail("-m bench: the tests need a context of at least max(--pp + 1, -n + 1, --getp-prompt + "
         "--getp-new) = %d positions; -c is %d",
         std::max({opt.bench_pp + 1, opt.max_new + 1, opt.bench_getp_prompt + opt.bench_getp_new}),
         opt.ctx);
  Session s = open_session(opt, opt.max_slots);
  const int V = s.model->config().vocab;
  std::mt19937_64 rng(opt.seed);
  std::vector<BenchResult> results;

  // warm(): one untimed run first (graph capture, caches); then the timed repetitions, each
  // printed on stderr as it finishes (a getp repetition can take minutes).
  auto run = [&](const std::string& name, int batch, auto&& once, auto&& warm) {
    BenchResult r{name, batch, {}};
    std::fprintf(stderr, "bench: %s (warm-up + %d reps)\n", name.c_str(), opt.bench_reps);
    warm();
    for (int i = 0; i < opt.bench_reps; ++i) {
      r.tok_s.push_back(once());
      std::fprintf(stderr, "bench: %s rep %d/%d: %.2f tok/s\n", name.c_str(), i + 1,
                   opt.bench_reps, r.tok_s.back());
    }
    results.push_back(r);
  };
  if (opt.bench_pp > 0) {
    auto pp = [&] {
      const auto prompt = random_tokens(rng, opt.bench_pp, V);
      return opt.bench_pp / time_pp(s, opt, prompt);
    };
    run("pp" + std::to_string(opt.bench_pp), 1, pp, pp);
  }
  auto tg = [&] { return opt.max_new / time_tg(s, opt, random_tokens(rng, 1, V)[0], opt.max_new); };
  run("tg" + std::to_string(opt.max_new), 1, tg, tg);
  if (opt.bench_getp_new > 0) {
    // Warm-up: the same concurrency with short prompts and few new tokens (the same step shapes,
    // a fraction of the time).
    run("getp p" + std::to_string(opt.bench_getp_prompt) + " n" + std::to_string(opt.bench_getp_new),
        s.slots,
        [&] {
          const auto [sec, gen] =
              time_getp(s, opt, s.slots, opt.bench_getp_prompt, opt.bench_getp_new, rng);
          return double(gen) / sec;
        },
        [&] {
          time_getp(s, opt, s.slots, std::min(opt.bench_getp_prompt, 64),
                    std::min(opt.bench_getp_new, 8), rng);
          return 0.0;
        });
  }

  const std::string model = s.model->description();
  if (opt.bench_format == "json") {
    std::printf("[\n");
    for (size_t i = 0; i < results.size(); ++i) {
      const auto& r = results[i];
      std::printf("  {\"model\": \"%s\", \"backend\": \"%s\", \"test\": \"%s\", \"batch\": %d, "
                  "\"reps\": %zu, \"tok_per_s_mean\": %.2f, \"tok_per_s_std\": %.2f, \"tok_per_s\": [",
                  model.c_str(), s.backend.c_str(), r.test.c_str(), r.batch, r.tok_s.size(), r.mean(),
                  r.stddev());
      for (size_t j = 0; j < r.tok_s.size(); ++j) std::printf("%s%.2f", j ? ", " : "", r.tok_s[j]);
      std::printf("]}%s\n", i + 1 < results.size() ? "," : "");
    }
    std::printf("]\n");
  } else if (opt.bench_format == "csv") {
    std::printf("model,backend,test,batch,reps,tok_per_s_mean,tok_per_s_std\n");
    for (const auto& r : results)
      std::printf("\"%s\",%s,%s,%d,%zu,%.2f,%.2f\n", model.c_str(), s.backend.c_str(), r.test.c_str(),
                  r.batch, r.tok_s.size(), r.mean(), r.stddev());
  } else {
    std::printf("| model | backend | test | batch | t/s |\n|---|---|---|---:|---:|\n");
    for (const auto& r : results)
      std::printf("| %s | %s | %s | %d | %.2f ± %.2f |\n", model.c_str(), s.backend.c_str(),
                  r.test.c_str(), r.batch, r.mean(), r.stddev());
  }
  s.finish();
  return 0;
}

}  // namespace gptoss
