// mode_generate.cpp: `run -m generate -i TEXT` (or -f FILE, or the text on stdin): raw completion
// (no chat template) streamed to stdout; prompt/prefill, time to first token and decode speed on
// stderr.
#include <unistd.h>

#include <algorithm>
#include <cstdio>

#include "common/error.h"
#include "run/getp_io.h"
#include "run/modes.h"
#include "run/paths.h"
#include "run/session.h"

namespace gptoss {

namespace {

// The prompt: -i TEXT; -i - or no -i/-f: stdin (not a terminal); -f FILE. Text read from a file
// or stdin loses one final newline ("\n" or "\r\n"), as `echo text |` adds one.
std::string read_prompt(const RunOptions& opt, const char** flag) {
  *flag = !opt.prompt_file.empty() ? "-f" : opt.input_given ? "-i" : "stdin";
  if (opt.input_given && opt.input != "-") return opt.input;
  const std::string path = opt.prompt_file.empty() ? "-" : opt.prompt_file;
  if (path == "-" && isatty(STDIN_FILENO))
    fail("-m generate needs a prompt: -i \"text\", -f FILE, or the text on stdin");
  check_input_file(path, opt.prompt_file.empty() ? "-i" : "-f");
  // As a getp prompt line: at most 16 MiB (a wrong file is an error, not memory exhaustion).
  std::string text = read_file(path, GetpLimits{}.prompt_bytes, "a prompt");
  if (!text.empty() && text.back() == '\n') text.pop_back();
  if (!text.empty() && text.back() == '\r') text.pop_back();
  return text;
}

}  // namespace

int run_generate(const RunOptions& options) {
  RunOptions opt = options;
  const char* flag = "-i";
  const std::string text = read_prompt(opt, &flag);  // before anything is loaded
  if (text.empty()) fail("%s: the prompt is empty", flag);
  check_model_paths(opt);
  const std::string seed_note = pick_fresh_seed(opt);
  Session s = open_session(opt, 1);
  if (!seed_note.empty()) std::fprintf(stderr, "%s\n", seed_note.c_str());
  double t0 = now_seconds();
  // Special-token texts in the prompt (e.g. "<|start|>") become their ids: a hand-written
  // harmony prompt works in generate mode too.
  std::vector<int32_t> prompt = s.tokenizer->encode(text, /*allow_special=*/true);
  if (prompt.empty()) fail("%s: the prompt encodes to no tokens", flag);
  if (static_cast<int>(prompt.size()) >= opt.ctx)
    fail("%s: the prompt is %zu tokens; it must be shorter than the context (-c %d)", flag,
         prompt.size(), opt.ctx);

  const SchedulerOptions so = s.scheduler_options(opt, 1);
  Scheduler sch(so, sampler_factory(opt));
  StreamDecoder dec(*s.tokenizer);
  double t_first = 0;
  size_t n_gen = 0;
  FinishReason reason = FinishReason::MaxTokens;
  sch.on_token = [&](uint64_t, int32_t t) {
    if (n_gen++ == 0) t_first = now_seconds();
    bool stop = !opt.ignore_eos &&
                std::find(opt.stop_ids.begin(), opt.stop_ids.end(), t) != opt.stop_ids.end();
    if (stop) return;  // the stop token is not printed
    std::string piece = dec.push(t);
    if (!piece.empty()) {
      std::fwrite(piece.data(), 1, piece.size(), stdout);
      std::fflush(stdout);
    }
  };
  sch.on_finish = [&](Finished&& f) { reason = f.reason; };
  sch.submit(Request{0, prompt, opt.max_new, 0, -1});
  s.run(sch);
  double t_end = now_seconds();
  // The text always ends with one newline of our own (the completion is everything before it), so
  // the stats on stderr start on a line of their own.
  std::string rest = dec.flush() + "\n";
  std::fwrite(rest.data(), 1, rest.size(), stdout);
  std::fflush(stdout);

  double prefill_s = t_first - t0, decode_s = t_end - t_first;
  std::fprintf(stderr, "prompt: %s, prefill %.3f s (%.1f tok/s); time to first token %.3f s\n",
               count_of(prompt.size(), "token").c_str(), prefill_s,
               prompt.size() / std::max(prefill_s, 1e-9), prefill_s);
  std::fprintf(stderr, "generated: %s (%s), decode %.3f s (%.1f tok/s)\n",
               count_of(n_gen, "token").c_str(), finish_reason_name(reason), decode_s,
               n_gen > 1 ? (n_gen - 1) / std::max(decode_s, 1e-9) : 0.0);
  s.finish();
  return 0;
}

}  // namespace gptoss
