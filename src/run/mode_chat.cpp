// mode_chat.cpp: `run -m chat`: interactive harmony chat, one user turn per line of stdin.
//
// KV cache reuse: the cache holds the literal token history of the conversation, and each turn
// feeds only the new tokens (the previous answer's closing token, then the user message and
// `<|start|>assistant`). A finished answer is stored with <|end|> in place of <|return|>, as the
// spec says; earlier analysis messages are KEPT (dropping them would change the cached prefix and
// force re-reading the whole history). A turn cut by -n or the context is closed with <|end|>.
// When the next turn does not fit the context the chat ends (exit 0) with a note on stderr.
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <iostream>
#include <string>

#include "common/error.h"
#include "run/getp_io.h"
#include "run/harmony.h"
#include "run/modes.h"
#include "run/session.h"

namespace gptoss {

int run_chat(const RunOptions& options) {
  RunOptions opt = options;
  check_model_paths(opt);
  const std::string seed_note = pick_fresh_seed(opt);
  Session s = open_session(opt, 1);
  if (!seed_note.empty()) std::fprintf(stderr, "%s\n", seed_note.c_str());
  const Tokenizer& tk = *s.tokenizer;
  TextEncoder enc = [&](std::string_view t) { return tk.encode(t, /*allow_special=*/false); };
  HarmonyParser parser([&](int32_t id) -> const std::string& { return tk.token_bytes(id); });

  SchedulerOptions so;
  so.max_slots = 1;
  so.chunk_tokens = s.chunk_tokens;
  so.ctx = opt.ctx;
  so.stop_ids = opt.stop_ids;
  so.ignore_eos = opt.ignore_eos;
  Scheduler sch(so, sampler_factory(opt));

  std::vector<int32_t> pending = harmony_preamble(enc, today_utc(), opt.reasoning, opt.developer);
  int pos = 0;  // tokens of the conversation in the KV cache
  const bool tty = isatty(STDIN_FILENO);
  uint64_t turn = 0;
  std::string line;
  for (;;) {
    if (tty) {
      std::fputs("> ", stdout);
      std::fflush(stdout);
    }
    if (!std::getline(std::cin, line)) break;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty()) continue;  // empty lines are not turns
    if (first_invalid_utf8(line) != std::string::npos) {
      std::fprintf(stderr, "chat: skipping a line that is not valid UTF-8\n");
      continue;
    }
    std::vector<int32_t> feed = std::move(pending);
    pending.clear();
    std::vector<int32_t> user = harmony_user_turn(enc, line);
    feed.insert(feed.end(), user.begin(), user.end());
    if (pos + static_cast<int64_t>(feed.size()) + 1 > opt.ctx) {
      if (turn == 0)
        fail("-c: the system prompt and first message take %zu tokens; they do not fit the "
             "context of %d",
             feed.size(), opt.ctx);
      std::fprintf(stderr, "chat: context full (%d of %d positions used); ending the chat\n", pos,
                   opt.ctx);
      break;
    }

    parser.reset();
    StreamDecoder dec(tk);
    bool labelled = false;
    auto out = [](const std::string& piece) {
      if (piece.empty()) return;
      std::fwrite(piece.data(), 1, piece.size(), stdout);
      std::fflush(stdout);
    };
    sch.on_token = [&](uint64_t, int32_t t) {
      switch (parser.feed(t)) {
        case HarmonyParser::Kind::Content: {
          std::string piece = dec.push(t);
          if (parser.visible()) {
            out(piece);
          } else if (opt.show_reasoning) {
            if (!labelled) out("[" + parser.channel() + "] ");
            labelled = true;
            out(piece);
          }
          break;
        }
        case HarmonyParser::Kind::MessageEnd: {
          std::string piece = dec.flush();
          if (parser.visible()) out(piece);
          else if (opt.show_reasoning && labelled) out(piece + "\n");
          labelled = false;
          break;
        }
        default:
          break;
      }
    };
    Finished done;
    sch.on_finish = [&](Finished&& f) { done = std::move(f); };
    double t0 = now_seconds();
    sch.submit(Request{turn, feed, opt.max_new, pos, 0});
    s.run(sch);
    double dt = now_seconds() - t0;
    std::string rest = dec.flush();
    if (parser.visible() || (opt.show_reasoning && labelled)) out(rest);
    out("\n");

    pos = done.end_pos;
    int32_t last = done.generated.back();
    if (done.reason == FinishReason::Stop) {
      pending = {last == tok::kCall ? tok::kCall : tok::kEnd};
    } else {
      pending = {last, tok::kEnd};
      std::fprintf(stderr, "chat: turn ended after %zu tokens without <|return|> (%s)%s\n",
                   done.generated.size(), finish_reason_name(done.reason),
                   parser.saw_final() ? ""
                                      : "; no final answer: the model does not follow the harmony "
                                        "format (random weights?)");
    }
    std::fprintf(stderr, "[turn %llu: %zu new prompt tokens, %zu generated in %.2f s (%.1f tok/s), "
                 "context %d/%d]\n",
                 (unsigned long long)(turn + 1), feed.size(), done.generated.size(), dt,
                 done.generated.size() / std::max(dt, 1e-9), pos, opt.ctx);
    ++turn;
  }
  if (tty) std::fputs("\n", stdout);
  s.finish();
  return 0;
}

}  // namespace gptoss
