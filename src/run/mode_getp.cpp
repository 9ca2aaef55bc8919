// mode_getp.cpp: `run -m getp -i IN -o OUT`: batch evaluation with continuous batching.
// Input rules, the OUT.partial format, resume and verify: getp_io.h and src/run/README.md; where
// OUT goes: paths.h.
// SIGINT/SIGTERM: the current step finishes, OUT.partial is fsynced and kept, the run says how
// far it got and exits with 128 + signal; a second signal kills at once.
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "common/error.h"
#include "run/getp_io.h"
#include "run/getp_runner.h"
#include "run/modes.h"
#include "run/paths.h"
#include "run/rings.h"
#include "run/rings_jobs.h"
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

int run_getp(const RunOptions& options) {
  RunOptions opt = options;
  // Every path is checked before anything is loaded: IN read and parsed, REF read and parsed,
  // where OUT goes (and that it is neither IN, REF, the model nor the tokenizer), OUT.partial,
  // the model and tokenizer.
  check_model_paths(opt);
  const std::string in_name = opt.input == "-" ? "stdin" : opt.input;
  check_input_file(opt.input, "-i");
  const OutputTarget out = resolve_output(opt.output, "-o");
  if (same_file(opt.input, opt.output))
    fail("-o %s: is the input file (-i %s)", opt.output.c_str(), opt.input.c_str());
  // OUT replaces its file at the end: never the model's or the tokenizer's.
  if (same_file(opt.model_path, opt.output))
    fail("-o %s: is the model file (%s)", opt.output.c_str(), opt.model_path.c_str());
  if (same_file(opt.tokenizer_path, opt.output))
    fail("-o %s: is the tokenizer file (-z %s)", opt.output.c_str(), opt.tokenizer_path.c_str());
  IdRows ref;
  if (!opt.verify_path.empty()) {
    check_input_file(opt.verify_path, "--verify");
    if (same_file(opt.verify_path, opt.output))
      fail("--verify %s: is the output file (-o %s); the reference must be another file",
           opt.verify_path.c_str(), opt.output.c_str());
    const std::string ref_name = opt.verify_path == "-" ? "stdin" : opt.verify_path;
    ref = parse_id_rows(read_file(opt.verify_path, UINT64_MAX, "a reference"), ref_name);
  }
  std::string input = read_prompt_input(opt.input);
  std::vector<PromptLine> lines = parse_prompts(input, in_name);
  const size_t n = lines.size();
  std::string partial_path;
  bool have_partial = false;
  if (out.resumable()) {
    partial_path = opt.output + ".partial";
    struct stat st;
    have_partial = ::lstat(partial_path.c_str(), &st) == 0;
    if (have_partial && !S_ISREG(st.st_mode))
      fail("%s: exists and is not a regular file", partial_path.c_str());
    if (!opt.resume && have_partial)
      fail("%s: exists (left by an interrupted run): use --resume to continue it, or delete it",
           partial_path.c_str());
    if (opt.resume && !have_partial)
      std::fprintf(stderr, "getp: --resume: no %s, starting from the beginning\n",
                   partial_path.c_str());
  } else if (opt.resume) {
    fail("--resume needs -o to be a regular file (%s is not: nothing is kept to resume from)",
         opt.output.c_str());
  }
  // Sampling without -s: a resumed run takes the seed its OUT.partial was started with.
  std::string seed_note;
  if (!opt.seed_given && opt.temperature > 0 && have_partial && opt.resume) {
    if (std::optional<uint64_t> seed = partial_seed(partial_path)) {
      opt.seed = *seed;
      seed_note = strfmt("seed: %llu (from %s)", (unsigned long long)opt.seed, partial_path.c_str());
    }
  }
  if (seed_note.empty()) seed_note = pick_fresh_seed(opt);
  // Slots: without -b no more than the prompts need; under mpirun every rank is told the count
  // (collective: the other ranks wait for it in run_mode before opening their ring).
  cap_getp_slots(opt, n);

  // Prompts are tokenized and checked against the context before the model is loaded.
  double tok_load_s = 0;
  std::unique_ptr<Tokenizer> tokenizer = load_tokenizer(opt, &tok_load_s);
  std::vector<std::vector<int32_t>> prompts(n);
  size_t prompt_tokens = 0;
  for (size_t i = 0; i < n; ++i) {
    // Special-token texts become their ids (a harmony-formatted prompt line works).
    prompts[i] = tokenizer->encode(lines[i].text, /*allow_special=*/true);
    if (prompts[i].empty())
      fail("%s:%d: the prompt encodes to no tokens", in_name.c_str(), lines[i].line);
    if (static_cast<int>(prompts[i].size()) >= opt.ctx)
      fail("%s:%d: the prompt is %zu tokens; it must be shorter than the context (-c %d)",
           in_name.c_str(), lines[i].line, prompts[i].size(), opt.ctx);
    prompt_tokens += prompts[i].size();
  }

  Session s = open_session(opt, opt.max_slots, std::move(tokenizer), tok_load_s);
  if (!seed_note.empty()) std::fprintf(stderr, "%s\n", seed_note.c_str());
  install_handlers();  // before OUT.partial exists
  GetpJob job;
  job.out = out;
  job.partial_path = partial_path;
  job.header = partial_header(n, run_key(input, s, opt), opt.seed);
  job.resume = opt.resume;
  job.max_new = opt.max_new;
  job.sched = s.scheduler_options(opt);
  job.progress_tty = isatty(STDERR_FILENO);
  job.progress_lines_s = opt.progress_s;
  // Under Open MPI a rank's parent is its launcher (mpirun, or orted on other nodes). mpirun
  // interrupted twice quits without waiting for the ranks; rank 0 then stops at the next step
  // instead of computing on and appending to OUT.partial while a --resume may already start
  // (src/run/README.md, "Interrupting").
  const pid_t launcher = std::getenv("OMPI_COMM_WORLD_RANK") ? ::getppid() : 0;
  auto launcher_gone = [launcher] { return launcher > 1 && ::getppid() != launcher; };
  // One ring: its scheduler takes every prompt. Several (--dp): rank 0 hands them out by load.
  std::unique_ptr<RequestRunner> runner;
  RingsRunner* rings_runner = nullptr;
  if (rings().dp > 1) {
    auto rr = std::make_unique<RingsRunner>(s, job.sched, sampler_factory(opt), opt.seed, opt);
    rings_runner = rr.get();
    runner = std::move(rr);
  } else {
    StepDriver drive = [&s](Scheduler& sch, const std::function<bool()>& stop,
                            const std::function<void()>& after) { s.run(sch, stop, after); };
    runner = std::make_unique<SchedulerRunner>(drive, job.sched, sampler_factory(opt));
  }
  GetpResult r = run_getp_job(*runner, prompts, job,
                              [&] { return g_signal != 0 || launcher_gone(); });
  if (r.interrupted && g_signal == 0) {
    // OUT.partial is closed; nobody waits for this job any more: end now, without the ring.
    std::fprintf(stderr,
                 "getp: the launcher (pid %d) has exited: stopping; %zu/%zu done, kept in %s\n",
                 static_cast<int>(launcher), r.done, n, partial_path.c_str());
    std::fflush(stderr);
    std::_Exit(kExitError);
  }
  // Ends the ring on every rank (also after an interruption) and prints the stage report.
  std::vector<double> busy = s.finish();
  if (r.done_before)
    std::fprintf(stderr, "getp: resumed: %zu/%zu prompts were already done in %s\n",
                 r.done_before, n, partial_path.c_str());
  if (r.interrupted) {
    int sig = g_signal;
    if (partial_path.empty())
      std::fprintf(stderr, "getp: interrupted by %s: %zu/%zu prompts were done; nothing is kept "
                   "(-o %s is not a regular file)\n",
                   sig == SIGINT ? "SIGINT" : "SIGTERM", r.done, n, opt.output.c_str());
    else
      std::fprintf(stderr,
                   "getp: interrupted by %s: %zu/%zu prompts done, kept in %s; rerun with --resume "
                   "to finish\n",
                   sig == SIGINT ? "SIGINT" : "SIGTERM", r.done, n, partial_path.c_str());
    return 128 + sig;
  }
  if (rings_runner) std::fprintf(stderr, "getp: %s\n", rings_runner->summary().c_str());
  std::fprintf(stderr, "getp: %s (%s) -> %s\n", count_of(n, "prompt").c_str(),
               count_of(prompt_tokens, "prompt token").c_str(),
               out.kind == OutputTarget::Kind::Stdout ? "stdout" : opt.output.c_str());
  std::fprintf(stderr,
               "getp: generated %s in %.2f s of inference (%.1f tok/s output); load %.2f s\n",
               count_of(r.generated, "token").c_str(), r.wall_s,
               r.generated / std::max(r.wall_s, 1e-9), s.load_s);
  std::string busy_list;
  for (size_t i = 0; i < busy.size(); ++i) busy_list += strfmt("%s%.1f", i ? ", " : "", busy[i]);
  // One machine-readable line (launch/sweep.py reads it).
  std::fprintf(stderr,
               "getp: {\"prompts\": %zu, \"prompt_tokens\": %zu, \"resumed_prompts\": %zu, "
               "\"generated_tokens\": %llu, \"wall_s\": %.4f, \"tok_s\": %.2f, \"load_s\": %.4f, "
               "\"batch\": %d, \"rings\": %d, \"ranks\": %d, \"micro_batches\": %d, "
               "\"stage_busy_pct\": [%s]}\n",
               n, prompt_tokens, r.done_before, (unsigned long long)r.generated, r.wall_s,
               r.generated / std::max(r.wall_s, 1e-9), s.load_s, s.slots, rings().dp,
               rings().world_size, s.micro_batches, busy_list.c_str());

  if (!opt.verify_path.empty()) {
    VerifyReport v = verify_rows(r.outputs, ref);
    std::fprintf(stderr, "verify: %s\n", v.summary().c_str());
    if (!v.all_match || v.out_lines != v.ref_lines) {
      std::fprintf(stderr, "verify: %s differs from %s (exit status %d)\n",
                   out.kind == OutputTarget::Kind::Stdout ? "stdout" : opt.output.c_str(),
                   opt.verify_path.c_str(), kExitVerifyMismatch);
      return kExitVerifyMismatch;
    }
  }
  return kExitOk;
}

}  // namespace gptoss
