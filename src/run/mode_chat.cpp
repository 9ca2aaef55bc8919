// mode_chat.cpp: `run -m chat`: interactive harmony chat, one user turn per message of stdin
// (line_reader.h: libedit on a terminal, a trailing backslash continues a message).
//
// Ctrl-C (SIGINT), as in llama-cli: while a turn is generated it stops that turn after the step in
// flight (after its first token, so the history stays valid harmony); what was generated stays in
// the context, closed with <|end|> as a -n cut, and the prompt comes back. At the prompt (empty
// line) it ends the chat; with text typed it clears the line. Two within a second end the chat
// whatever it is doing, a third kills at once. The chat ends with a summary on stderr; exit 130
// when Ctrl-C ended it, 0 at the end of input.
//
// KV cache reuse: the cache holds the literal token history of the conversation, and each turn
// feeds only the new tokens (the previous answer's closing token, then the user message and
// `<|start|>assistant`). A finished answer is stored with <|end|> in place of <|return|>, as the
// spec says; earlier analysis messages are KEPT (dropping them would change the cached prefix and
// force re-reading the whole history). A turn cut by -n or the context is closed with <|end|>.
// When the next turn does not fit the context the chat ends (exit 0) with a note on stderr.
#include <signal.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <string>

#include "common/error.h"
#include "harmony/harmony.h"
#include "run/getp_io.h"
#include "run/line_reader.h"
#include "run/modes.h"
#include "run/paths.h"
#include "run/session.h"

namespace gptoss {

namespace {

volatile sig_atomic_t g_interrupt = 0;  // a Ctrl-C not acted on yet
volatile sig_atomic_t g_quit = 0;       // two within a second: end the chat
long long g_last_ms = -1000000;         // the handler's own state
int g_streak = 0;

void on_sigint(int) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  const long long ms = ts.tv_sec * 1000LL + ts.tv_nsec / 1000000;
  g_streak = ms - g_last_ms < 1000 ? g_streak + 1 : 1;
  g_last_ms = ms;
  g_interrupt = 1;
  if (g_streak >= 2) g_quit = 1;
  if (g_streak >= 3) {
    signal(SIGINT, SIG_DFL);
    raise(SIGINT);
  }
}

// No SA_RESTART: a read waiting for the user returns (EINTR) on Ctrl-C.
void install_sigint() {
  struct sigaction sa;
  std::memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_sigint;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
}

}  // namespace

int run_chat(const RunOptions& options) {
  RunOptions opt = options;
  check_model_paths(opt);
  const std::string seed_note = pick_fresh_seed(opt);
  Session s = open_session(opt, 1);
  if (!seed_note.empty()) std::fprintf(stderr, "%s\n", seed_note.c_str());
  const Tokenizer& tk = *s.tokenizer;
  TextEncoder enc = [&](std::string_view t) { return tk.encode(t, /*allow_special=*/false); };
  HarmonyParser parser([&](int32_t id) -> const std::string& { return tk.token_bytes(id); });

  const SchedulerOptions so = s.scheduler_options(opt, 1);
  Scheduler sch(so, sampler_factory(opt));

  std::vector<int32_t> pending = harmony_preamble(enc, today_utc(), opt.reasoning, opt.developer);
  int pos = 0;  // tokens of the conversation in the KV cache
  const bool tty = isatty(STDIN_FILENO);
  LineReader reader(tty);
  install_sigint();
  uint64_t turn = 0, stopped_turns = 0;
  size_t fed_total = 0, generated_total = 0;
  double gen_s_total = 0;
  bool ended_by_ctrl_c = false;
  std::string line;
  for (;;) {
    if (g_quit) {
      ended_by_ctrl_c = true;
      break;
    }
    g_interrupt = 0;  // a Ctrl-C as a turn ended was for that turn
    bool typed = false;
    const LineReader::Result got = reader.read(line, typed);
    if (got == LineReader::Result::Interrupted) {
      if (!g_interrupt) continue;  // another signal
      if (typed && !g_quit) {      // Ctrl-C on a typed line clears it
        std::fputs("\n", tty && !isatty(STDOUT_FILENO) ? stderr : stdout);
        continue;
      }
      ended_by_ctrl_c = true;
      break;
    }
    if (got == LineReader::Result::End) break;
    if (line.empty()) continue;  // empty lines are not turns
    if (first_invalid_utf8(line) != std::string::npos) {
      std::fprintf(stderr, "chat: skipping a message that is not valid UTF-8\n");
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
    // Ctrl-C stops the turn once it has a token; two end the chat at once.
    const uint64_t generated_before = sch.stats().generated;
    s.run(sch, [&] { return g_quit || (g_interrupt && sch.stats().generated > generated_before); });
    if (sch.busy()) sch.cancel(turn);
    double dt = now_seconds() - t0;
    std::string rest = dec.flush();
    if (parser.visible() || (opt.show_reasoning && labelled)) out(rest);
    out("\n");

    fed_total += feed.size();
    generated_total += done.generated.size();
    gen_s_total += dt;
    if (done.generated.empty()) {  // ended by a double Ctrl-C before its first token
      pos = done.end_pos;
      ++turn;
      ++stopped_turns;
      ended_by_ctrl_c = true;
      break;
    }
    pos = done.end_pos;
    int32_t last = done.generated.back();
    if (done.reason == FinishReason::Stop) {
      pending = {last == tok::kCall ? tok::kCall : tok::kEnd};
    } else if (done.reason == FinishReason::Cancelled) {
      pending = {last, tok::kEnd};
      ++stopped_turns;
      std::fprintf(stderr, "chat: turn stopped by Ctrl-C after %s; they stay in the context\n",
                   count_of(done.generated.size(), "token").c_str());
    } else {
      pending = {last, tok::kEnd};
      std::fprintf(stderr, "chat: turn ended after %s without <|return|> (%s)%s\n",
                   count_of(done.generated.size(), "token").c_str(),
                   finish_reason_name(done.reason),
                   parser.saw_final() ? ""
                                      : "; no final answer: the model does not follow the harmony "
                                        "format (random weights?)");
    }
    std::fprintf(stderr, "[turn %llu: %s, %zu generated in %.2f s (%.1f tok/s), context %d/%d]\n",
                 (unsigned long long)(turn + 1), count_of(feed.size(), "new prompt token").c_str(),
                 done.generated.size(), dt, done.generated.size() / std::max(dt, 1e-9), pos,
                 opt.ctx);
    ++turn;
  }
  if (tty) std::fputs("\n", isatty(STDOUT_FILENO) ? stdout : stderr);
  std::fflush(stdout);
  std::fprintf(stderr,
               "chat: %s%s, %s fed, %s generated in %.2f s (%.1f tok/s), context %d/%d%s\n",
               count_of(turn, "turn").c_str(),
               stopped_turns ? strfmt(" (%llu stopped by Ctrl-C)",
                                      (unsigned long long)stopped_turns).c_str()
                             : "",
               count_of(fed_total, "prompt token").c_str(), count_of(generated_total, "token").c_str(),
               gen_s_total, generated_total / std::max(gen_s_total, 1e-9), pos, opt.ctx,
               ended_by_ctrl_c ? "; ended by Ctrl-C" : "");
  s.finish();
  return ended_by_ctrl_c ? 128 + SIGINT : kExitOk;
}

}  // namespace gptoss
