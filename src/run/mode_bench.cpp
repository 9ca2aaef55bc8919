// mode_bench.cpp: `run MODEL -m bench`: throughput in the spirit of llama-bench, through the same
// session, pipeline and scheduler as the other modes (any number of ranks).
//   pp<P>       --pp-batch prompts (default 1) of P random tokens each (--pp, default 512),
//               prefilled together in steps of --chunk rows; prompt tok/s.
//   tg<N>       N decode steps (-n, default 128) of --tg-batch sequences (default 1) after a
//               1-token prompt each; generated tok/s.
//   getp        -b sequences (default 32), each a synthetic prompt of --getp-prompt random tokens
//               (default 1024) generating --getp-new tokens (default 1024, --ignore-eos implied,
//               greedy), run through the same continuous-batching scheduler as -m getp; output
//               (generated) tok/s over the whole run, prefill included.
// Each test runs once as warm-up, then -r times (default 3); reported as mean +- sample std of
// tok/s, next to the most the device could do on that work (src/run/roofline.h: bytes over the
// read bandwidth, flops over the matrix peak, whichever is slower; measured bandwidth and the
// data-sheet peak on a GPU, --peak-gbs / --peak-tflops to give them) and the fraction of it
// reached. With several ranks the limit is one device's. Output (stdout) as --format md (default)
// | csv | json; progress on stderr.
// Small values (-n 8 --pp 32 --getp-prompt 16 --getp-new 8 -b 2) make it usable on the CPU backend.
#include <cmath>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "common/error.h"
#include "pipeline/pipeline.h"
#include "run/modes.h"
#include "run/roofline.h"
#include "run/session.h"

namespace gptoss {

namespace {

struct BenchResult {
  std::string test;
  int batch = 1;
  std::vector<double> tok_s;
  double limit = 0;  // tok/s the device could reach on this work (0 = unknown)
  double fraction() const { return limit > 0 ? mean() / limit : 0; }
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

// Rows per step of a prefill of B prompts: the step budget, on the GPU at most kGpuSeqStepRows of
// each prompt (its device steps take no more of one sequence) and, on one GPU, --step-rows.
int prefill_rows(const Session& s, const RunOptions& opt, int B) {
  if (s.backend != "gpu") return s.chunk_tokens;
  int64_t rows = std::min<int64_t>(s.chunk_tokens, int64_t(B) * kGpuSeqStepRows);
  if (s.ranks == 1) rows = std::min<int64_t>(rows, opt.step_rows);
  return static_cast<int>(rows);
}

// A scheduler over the session for `slots` sequences, greedy, ignoring end-of-sequence tokens.
Scheduler bench_scheduler(const Session& s, const RunOptions& opt, int slots) {
  SchedulerOptions so = s.scheduler_options(opt, slots);
  so.ignore_eos = true;
  RunOptions greedy = opt;
  greedy.temperature = 0.0f;
  return Scheduler(so, sampler_factory(greedy));
}

// `prompts` prefilled together in steps of --chunk rows, up to their first tokens; seconds.
double time_pp(Session& s, const RunOptions& opt, const std::vector<std::vector<int32_t>>& prompts) {
  Scheduler sch = bench_scheduler(s, opt, static_cast<int>(prompts.size()));
  sch.on_finish = [](Finished&&) {};
  for (size_t i = 0; i < prompts.size(); ++i) sch.submit(Request{i, prompts[i], 1, 0, -1});
  const double t0 = now_seconds();
  s.run(sch);
  return now_seconds() - t0;
}

// `first` (one 1-token prompt per sequence), then n greedy decode steps of all of them together
// (the token chosen where the backend chooses: on the device for the GPU); seconds for the n
// steps after every sequence has its first token.
double time_tg(Session& s, const RunOptions& opt, const std::vector<int32_t>& first, int n) {
  const int B = static_cast<int>(first.size());
  Scheduler sch = bench_scheduler(s, opt, B);
  double t_first = 0;
  std::vector<int> got(first.size(), 0);
  int started = 0;
  sch.on_token = [&](uint64_t id, int32_t) {
    if (got[id]++ == 0 && ++started == B) t_first = now_seconds();
  };
  sch.on_finish = [](Finished&&) {};
  for (int b = 0; b < B; ++b) sch.submit(Request{uint64_t(b), {first[size_t(b)]}, n + 1, 0, -1});
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
  const Config& c = s.model->config();
  const int V = c.vocab;
  std::mt19937_64 rng(opt.seed);
  std::vector<BenchResult> results;
  // The device's ceilings (rank 0's device; the CPU has none unless given).
  Backend& dev = s.pipeline->backend();
  Peak peak;
  peak.gbs = opt.peak_gbs > 0 ? opt.peak_gbs : dev.measure_read_gbs();
  peak.tflops = opt.peak_tflops > 0 ? opt.peak_tflops : dev.matrix_peak_tflops();
  std::fprintf(stderr, "bench: limits from %s and %s%s\n",
               peak.gbs > 0 ? strfmt("%.0f GB/s read bandwidth (%s)", peak.gbs,
                                     opt.peak_gbs > 0 ? "given" : "measured").c_str()
                            : "no read bandwidth (--peak-gbs)",
               peak.tflops > 0 ? strfmt("%.1f TFLOP/s matrix peak (%s)", peak.tflops,
                                        opt.peak_tflops > 0 ? "given" : "data sheet").c_str()
                               : "no matrix peak (--peak-tflops)",
               s.ranks > 1 ? "; one device's, the ring has several" : "");
  const int kv_bytes = s.backend == "gpu" && opt.kv_cache != "f32" ? 2 : 4;

  // warm(): one untimed run first (graph capture, caches); then the timed repetitions, each
  // printed on stderr as it finishes (a getp repetition can take minutes).
  auto run = [&](const std::string& name, int batch, double limit, auto&& once, auto&& warm) {
    BenchResult r{name, batch, {}, limit};
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
    const int B = opt.bench_pp_batch;
    auto pp = [&] {
      std::vector<std::vector<int32_t>> prompts;
      for (int b = 0; b < B; ++b) prompts.push_back(random_tokens(rng, opt.bench_pp, V));
      return double(B) * opt.bench_pp / time_pp(s, opt, prompts);
    };
    const double limit = limit_tok_s(prefill(c, B, opt.bench_pp, prefill_rows(s, opt, B)),
                                     double(B) * opt.bench_pp, peak);
    run("pp" + std::to_string(opt.bench_pp), B, limit, pp, pp);
  }
  {
    const int B = opt.bench_tg_batch;
    auto tg = [&] {
      return double(B) * opt.max_new / time_tg(s, opt, random_tokens(rng, B, V), opt.max_new);
    };
    // Every step reads the weights once for the B rows, at positions 1 .. n (mean n / 2 + 1).
    const double limit =
        limit_tok_s(decode_step(c, B, opt.max_new / 2.0 + 1, kv_bytes), double(B), peak);
    run("tg" + std::to_string(opt.max_new), B, limit, tg, tg);
  }
  if (opt.bench_getp_new > 0) {
    // Warm-up: the same concurrency with short prompts and few new tokens (the same step shapes,
    // a fraction of the time).
    // The prefill of every prompt, then --getp-new decode steps of the whole batch at the mean
    // position (sequences that start later overlap the others' decode: a lower bound on time).
    const int B = s.slots, P = opt.bench_getp_prompt, N = opt.bench_getp_new;
    const Work pre = prefill(c, B, P, prefill_rows(s, opt, B));
    const Work dec = decode_step(c, B, P + N / 2.0, kv_bytes);
    const Work all{pre.bytes + N * dec.bytes, pre.flops + N * dec.flops};
    run("getp p" + std::to_string(P) + " n" + std::to_string(N), B,
        limit_tok_s(all, double(B) * N, peak),
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
                  "\"reps\": %zu, \"tok_per_s_mean\": %.2f, \"tok_per_s_std\": %.2f, "
                  "\"limit_tok_per_s\": %.2f, \"fraction_of_limit\": %.4f, \"peak_gbs\": %.1f, "
                  "\"peak_tflops\": %.1f, \"tok_per_s\": [",
                  model.c_str(), s.backend.c_str(), r.test.c_str(), r.batch, r.tok_s.size(), r.mean(),
                  r.stddev(), r.limit, r.fraction(), peak.gbs, peak.tflops);
      for (size_t j = 0; j < r.tok_s.size(); ++j) std::printf("%s%.2f", j ? ", " : "", r.tok_s[j]);
      std::printf("]}%s\n", i + 1 < results.size() ? "," : "");
    }
    std::printf("]\n");
  } else if (opt.bench_format == "csv") {
    std::printf("model,backend,test,batch,reps,tok_per_s_mean,tok_per_s_std,limit_tok_per_s,"
                "fraction_of_limit\n");
    for (const auto& r : results)
      std::printf("\"%s\",%s,%s,%d,%zu,%.2f,%.2f,%.2f,%.4f\n", model.c_str(), s.backend.c_str(),
                  r.test.c_str(), r.batch, r.tok_s.size(), r.mean(), r.stddev(), r.limit,
                  r.fraction());
  } else {
    std::printf("| model | backend | test | batch | t/s | limit t/s | of limit |\n"
                "|---|---|---|---:|---:|---:|---:|\n");
    for (const auto& r : results)
      std::printf("| %s | %s | %s | %d | %.2f ± %.2f | %s | %s |\n", model.c_str(),
                  s.backend.c_str(), r.test.c_str(), r.batch, r.mean(), r.stddev(),
                  r.limit > 0 ? strfmt("%.0f", r.limit).c_str() : "-",
                  r.limit > 0 ? strfmt("%.3f", r.fraction()).c_str() : "-");
  }
  s.finish();
  return 0;
}

}  // namespace gptoss
