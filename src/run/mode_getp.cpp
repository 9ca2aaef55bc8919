// mode_getp.cpp: `run -m getp -i IN -o OUT`: batch evaluation with continuous batching.
// Input rules, the OUT.partial format, resume and verify: getp_io.h and src/run/README.md.
// SIGINT/SIGTERM: the current step finishes, OUT.partial is fsynced and kept, the run says how
// far it got and exits with 128 + signal; a second signal kills at once.
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>

#include "common/error.h"
#include "run/getp_io.h"
#include "run/getp_runner.h"
#include "run/modes.h"
#include "run/session.h"

namespace gptoss {

namespace {

volatile sig_atomic_t g_signal = 0;
void on_signal(int sig) { g_signal = sig; }

void install_handlers() {
  struct sigaction sa;
  std::memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sa.sa_flags = SA_RESETHAND;  // a second signal takes the default action
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
}

uint64_t fnv1a(uint64_t h, const void* data, size_t n) {
  const auto* p = static_cast<const unsigned char*>(data);
  for (size_t i = 0; i < n; ++i) h = (h ^ p[i]) * 0x100000001b3ull;
  return h;
}

// Everything that changes the output ids: the input, the model, sampling and stopping flags.
// (-b, --chunk and -t do not change them.)
uint64_t run_key(const std::string& input, const Session& s, const RunOptions& o) {
  uint64_t h = 0xcbf29ce484222325ull;
  h = fnv1a(h, input.data(), input.size());
  std::string flags = strfmt("model=%016llx vocab=%d n=%d T=%.9g p=%.9g k=%d seed=%llu ctx=%d eos=%d stop=",
                             (unsigned long long)s.model->fingerprint(), s.tokenizer->vocab_size(),
                             o.max_new, o.temperature, o.top_p, o.top_k,
                             (unsigned long long)o.seed, o.ctx, o.ignore_eos ? 0 : 1);
  for (int32_t id : o.stop_ids) flags += std::to_string(id) + ",";
  return fnv1a(h, flags.data(), flags.size());
}


}  // namespace

int run_getp(const RunOptions& opt) {
  // The input is checked completely before the model is loaded.
  std::string input = read_prompt_input(opt.input);
  std::vector<PromptLine> lines = parse_prompts(input, opt.input);
  const size_t n = lines.size();
  const std::string partial_path = opt.output + ".partial";
  const bool have_partial = file_exists(partial_path);
  if (!opt.resume && have_partial)
    fail("%s: exists (left by an interrupted run): use --resume to continue it, or delete it",
         partial_path.c_str());
  if (opt.resume && !have_partial)
    std::fprintf(stderr, "getp: --resume: no %s, starting from the beginning\n", partial_path.c_str());

  // Prompts are tokenized and checked against the context before the model is loaded.
  double tok_load_s = 0;
  std::unique_ptr<Tokenizer> tokenizer = load_tokenizer(opt, &tok_load_s);
  std::vector<std::vector<int32_t>> prompts(n);
  size_t prompt_tokens = 0;
  for (size_t i = 0; i < n; ++i) {
    // Special-token texts become their ids (a harmony-formatted prompt line works).
    prompts[i] = tokenizer->encode(lines[i].text, /*allow_special=*/true);
    if (prompts[i].empty())
      fail("%s:%d: the prompt encodes to no tokens", opt.input.c_str(), lines[i].line);
    if (static_cast<int>(prompts[i].size()) >= opt.ctx)
      fail("%s:%d: the prompt is %zu tokens; it must be shorter than the context (-c %d)",
           opt.input.c_str(), lines[i].line, prompts[i].size(), opt.ctx);
    prompt_tokens += prompts[i].size();
  }

  Session s = open_session(opt, opt.max_slots, std::move(tokenizer), tok_load_s);
  install_handlers();  // before OUT.partial exists
  GetpJob job;
  job.out_path = opt.output;
  job.header = partial_header(n, run_key(input, s, opt));
  job.resume = opt.resume;
  job.max_new = opt.max_new;
  job.sched.max_slots = s.slots;
  job.sched.chunk_tokens = s.chunk_tokens;
  job.sched.ctx = opt.ctx;
  job.sched.stop_ids = opt.stop_ids;
  job.sched.ignore_eos = opt.ignore_eos;
  job.progress = isatty(STDERR_FILENO);
  StepDriver drive = [&s](Scheduler& sch, const std::function<bool()>& stop,
                          const std::function<void()>& after) { s.run(sch, stop, after); };
  GetpResult r = run_getp_job(drive, sampler_factory(opt), prompts, job,
                              [] { return g_signal != 0; });
  // Ends the ring on every rank (also after an interruption) and prints the stage report.
  std::vector<double> busy = s.finish();
  if (r.done_before)
    std::fprintf(stderr, "getp: resumed: %zu/%zu prompts were already done in %s\n",
                 r.done_before, n, partial_path.c_str());
  if (r.interrupted) {
    int sig = g_signal;
    std::fprintf(stderr,
                 "getp: interrupted by %s: %zu/%zu prompts done, kept in %s; rerun with --resume "
                 "to finish\n",
                 sig == SIGINT ? "SIGINT" : "SIGTERM", r.done, n, partial_path.c_str());
    return 128 + sig;
  }
  std::fprintf(stderr, "getp: %zu prompts (%zu prompt tokens) -> %s\n", n, prompt_tokens,
               opt.output.c_str());
  std::fprintf(stderr,
               "getp: generated %llu tokens in %.2f s of inference (%.1f tok/s output); "
               "load %.2f s\n",
               (unsigned long long)r.generated, r.wall_s, r.generated / std::max(r.wall_s, 1e-9),
               s.load_s);
  std::string busy_list;
  for (size_t i = 0; i < busy.size(); ++i) busy_list += strfmt("%s%.1f", i ? ", " : "", busy[i]);
  // One machine-readable line (launch/sweep.py reads it).
  std::fprintf(stderr,
               "getp: {\"prompts\": %zu, \"prompt_tokens\": %zu, \"resumed_prompts\": %zu, "
               "\"generated_tokens\": %llu, \"wall_s\": %.4f, \"tok_s\": %.2f, \"load_s\": %.4f, "
               "\"batch\": %d, \"ranks\": %d, \"micro_batches\": %d, \"stage_busy_pct\": [%s]}\n",
               n, prompt_tokens, r.done_before, (unsigned long long)r.generated, r.wall_s,
               r.generated / std::max(r.wall_s, 1e-9), s.load_s, s.slots, s.ranks,
               s.micro_batches, busy_list.c_str());

  if (!opt.verify_path.empty()) {
    VerifyReport r = verify_outputs(opt.output, opt.verify_path);
    std::fprintf(stderr, "verify: %s\n", r.summary().c_str());
    if (!r.all_match || r.out_lines != r.ref_lines)
      fail("verify: %s differs from %s", opt.output.c_str(), opt.verify_path.c_str());
  }
  return 0;
}

}  // namespace gptoss
