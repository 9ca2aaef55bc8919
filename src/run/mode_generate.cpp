// mode_generate.cpp: `run -m generate -i TEXT`: raw completion (no chat template) streamed to
// stdout; prompt/prefill, time to first token and decode speed on stderr.
#include <unistd.h>

#include <algorithm>
#include <cstdio>

#include "common/error.h"
#include "run/modes.h"
#include "run/session.h"

namespace gptoss {

int run_generate(const RunOptions& opt) {
  Session s = open_session(opt, 1);
  double t0 = now_seconds();
  // Special-token texts in the prompt (e.g. "<|start|>") become their ids: a hand-written
  // harmony prompt works in generate mode too.
  std::vector<int32_t> prompt = s.tokenizer->encode(opt.input, /*allow_special=*/true);
  if (prompt.empty()) fail("-i: the prompt encodes to no tokens");
  if (static_cast<int>(prompt.size()) >= opt.ctx)
    fail("-i: the prompt is %zu tokens; it must be shorter than the context (-c %d)",
         prompt.size(), opt.ctx);

  SchedulerOptions so;
  so.max_slots = 1;
  so.chunk_tokens = s.chunk_tokens;
  so.ctx = opt.ctx;
  so.stop_ids = opt.stop_ids;
  so.ignore_eos = opt.ignore_eos;
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
  std::string rest = dec.flush();
  if (isatty(STDOUT_FILENO)) rest += "\n";
  std::fwrite(rest.data(), 1, rest.size(), stdout);
  std::fflush(stdout);

  double prefill_s = t_first - t0, decode_s = t_end - t_first;
  std::fprintf(stderr, "prompt: %zu tokens, prefill %.3f s (%.1f tok/s); time to first token %.3f s\n",
               prompt.size(), prefill_s, prompt.size() / std::max(prefill_s, 1e-9), prefill_s);
  std::fprintf(stderr, "generated: %zu tokens (%s), decode %.3f s (%.1f tok/s)\n", n_gen,
               finish_reason_name(reason), decode_s,
               n_gen > 1 ? (n_gen - 1) / std::max(decode_s, 1e-9) : 0.0);
  s.finish();
  return 0;
}

}  // namespace gptoss
