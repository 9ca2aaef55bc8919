// scripted_server.cpp: the server of `run -m serve` (HttpServer, EngineLoop, Scheduler, the real
// tokenizer) in front of a scripted engine instead of a model, for the API tests only: a random-
// weight model never writes reasoning or tool calls, so this engine's logits make the model "say"
// a harmony script chosen by the prompt:
//   prompt has a tool result (to=assistant) -> final answer "It is sunny in Paris."
//   SCRIPT:reason   analysis then final
//   SCRIPT:tool     analysis then a call to functions.get_weather with {"location":"Paris"}
//   SCRIPT:preamble a commentary preamble, then the call
//   SCRIPT:broken   a valid analysis message, then text that is not harmony
//   SCRIPT:count    final "one two three ... twenty" (stop strings, max_tokens)
//   SCRIPT:slow     a long final answer, each engine step taking --step-ms (queue, disconnects)
//   otherwise       the fake engine's deterministic tokens (like a random model)
// The script's next token gets logit 100 and every other 0, so greedy and sampling agree.
//   scripted_server TOKENIZER [--port 0] [--api-key K] [-b SLOTS] [--max-queue N] [--step-ms MS]
#include <signal.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>
#include <thread>

#include "fake_engine.h"
#include "serve/engine_loop.h"
#include "serve/http_server.h"
#include "tokenizer/tokenizer.h"

namespace {

using namespace gptoss;

volatile sig_atomic_t g_signals = 0;
void on_signal(int) { g_signals = g_signals + 1; }

// A Backend (the interface every backend implements) over the tests' FakeBackend: the same row
// contract, with the logits of a scripted sequence replaced by its script's next token.
class ScriptedBackend final : public Backend {
 public:
  ScriptedBackend(const Tokenizer& tk, int slots, int ctx, int step_ms)
      : tk_(tk),
        fake_(tk.vocab_size(), slots, ctx, false),
        hist_(slots),
        script_(slots),
        prompt_len_(slots, -1),
        slow_(slots, false),
        step_ms_(step_ms) {}
  const Config& config() const override { return fake_.config(); }
  int first_layer() const override { return 0; }
  int last_layer() const override { return 1; }
  bool has_ends() const override { return true; }
  int ctx() const override { return fake_.ctx(); }
  int max_slots() const override { return fake_.max_slots(); }
  size_t kv_cache_bytes() const override { return 0; }
  void run(std::span<const int32_t> tokens, std::span<const RowPos> rows, const float* in,
           float* out) override {
    fake_.run(tokens, rows, in, out);  // checks the rows, keeps the default tokens' history
    rows_.assign(rows.begin(), rows.end());
    for (size_t i = 0; i < rows.size(); ++i) {
      const int s = rows[i].slot;
      if (rows[i].pos == 0) {
        hist_[s].clear();
        script_[s].clear();
        prompt_len_[s] = -1;
        slow_[s] = false;
      }
      hist_[s].push_back(tokens[i]);
    }
  }
  void head(const float* x, std::span<const int32_t> logit_rows, float* logits) override {
    fake_.head(x, logit_rows, logits);
    const int vocab = config().vocab;
    bool slow = false;
    for (size_t i = 0; i < logit_rows.size(); ++i) {
      const RowPos& r = rows_[static_cast<size_t>(logit_rows[i])];
      const auto& h = hist_[r.slot];
      if (prompt_len_[r.slot] < 0) {  // the first logits row ends the prompt: pick the script
        prompt_len_[r.slot] = r.pos + 1;
        bool slow_script = false;
        script_[r.slot] = choose(tk_.decode(h), &slow_script);
        slow_[r.slot] = slow_script;
      }
      slow = slow || slow_[r.slot];
      const auto& sc = script_[r.slot];
      if (sc.empty()) continue;
      const size_t k = static_cast<size_t>(r.pos + 1 - prompt_len_[r.slot]);
      float* row = logits + i * static_cast<size_t>(vocab);
      std::fill(row, row + vocab, 0.0f);
      row[sc[std::min(k, sc.size() - 1)]] = 100.0f;
    }
    if (slow && step_ms_ > 0) std::this_thread::sleep_for(std::chrono::milliseconds(step_ms_));
  }

 private:
  std::vector<int32_t> choose(const std::string& prompt, bool* slow) {
    *slow = false;
    auto ids = [&](const std::string& t) { return tk_.encode(t, true); };
    const size_t at = prompt.rfind("SCRIPT:");
    const std::string name = at == std::string::npos
                                 ? ""
                                 : prompt.substr(at + 7, prompt.find_first_of(" <", at) - at - 7);
    if (prompt.find("to=assistant<|channel|>commentary<|message|>") != std::string::npos)
      return ids("<|channel|>final<|message|>It is sunny in Paris.<|return|>");
    if (name == "reason")
      return ids(
          "<|channel|>analysis<|message|>The user wants 2+2. That is 4.<|end|><|start|>assistant"
          "<|channel|>final<|message|>2 + 2 = 4.<|return|>");
    if (name == "tool")
      return ids(
          "<|channel|>analysis<|message|>Need the weather tool.<|end|><|start|>assistant"
          "<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>"
          "{\"location\":\"Paris\"}<|call|>");
    if (name == "preamble")
      return ids(
          "<|channel|>commentary<|message|>Let me check.<|end|><|start|>assistant "
          "to=functions.get_weather"
          "<|channel|>commentary <|constrain|>json<|message|>{\"location\":\"Paris\"}<|call|>");
    if (name == "broken")
      return ids("<|channel|>analysis<|message|>Thinking.<|end|>not harmony at all<|return|>");
    if (name == "count")
      return ids(
          "<|channel|>final<|message|>one two three four five six seven eight nine ten eleven "
          "twelve thirteen fourteen fifteen sixteen seventeen eighteen nineteen twenty<|return|>");
    if (name == "slow") {
      *slow = true;
      std::string text = "<|channel|>final<|message|>";
      for (int i = 0; i < 400; ++i) text += " word";
      return ids(text + "<|return|>");
    }
    return {};
  }

  const Tokenizer& tk_;
  test::FakeBackend fake_;
  std::vector<RowPos> rows_;                  // the rows of the step being run
  std::vector<std::vector<int32_t>> hist_;    // [slot] prompt + generated tokens
  std::vector<std::vector<int32_t>> script_;  // [slot] the script ("" = the fake's tokens)
  std::vector<int> prompt_len_;
  std::vector<char> slow_;
  int step_ms_;
};

}  // namespace

int main(int argc, char** argv) {
  std::string tok_path, api_key;
  int port = 0, slots = 4, max_queue = 8, step_ms = 20, ctx = 4096;
  CLI::App app{"scripted_server: the serve front end on a scripted engine (tests only)"};
  app.add_option("tokenizer", tok_path)->required();
  app.add_option("--port", port);
  app.add_option("--api-key", api_key);
  app.add_option("-b", slots);
  app.add_option("--max-queue", max_queue);
  app.add_option("--step-ms", step_ms);
  app.add_option("-c", ctx);
  CLI11_PARSE(app, argc, argv);
  signal(SIGINT, on_signal);
  signal(SIGTERM, on_signal);
  try {
    Tokenizer tk(tok_path);
    serve::ServerConfig cfg;
    cfg.port = port;
    cfg.api_key = api_key;
    cfg.slots = slots;
    cfg.max_queue = max_queue;
    cfg.limits.model_id = "scripted";
    cfg.limits.ctx = ctx;
    cfg.limits.vocab = tk.vocab_size();
    cfg.limits.temperature = 0;
    cfg.stop_ids = {199999, 200002, 200012};
    serve::Inbox inbox;
    serve::Metrics metrics;
    serve::HttpServer http(cfg, tk, inbox, metrics);
    http.start();
    std::fprintf(stderr, "serve: listening on http://127.0.0.1:%d\n", http.port());
    std::fflush(stderr);
    Engine engine(std::make_unique<ScriptedBackend>(tk, slots, ctx, step_ms));
    SchedulerOptions so;
    so.max_slots = slots;
    so.chunk_tokens = 256;
    so.ctx = ctx;
    so.stop_ids = cfg.stop_ids;
    serve::EngineLoop loop(inbox, metrics, [](uint64_t id) { return id; });
    Scheduler sch(so, loop.chooser_factory());
    // Session::run's one-engine loop.
    auto run = [&](Scheduler& s, const std::function<bool()>& should_stop,
                   const std::function<void()>& after_commit,
                   const std::function<void()>& before_plan) {
      for (;;) {
        if (should_stop()) return;
        before_plan();
        if (!s.busy()) return;
        s.run_step(engine);
        after_commit();
      }
    };
    loop.run(
        sch, run,
        [&] {
          const int n = g_signals;
          if (n >= 1) http.drain();
          return n >= 2 ? 2 : n;
        },
        5.0);
    http.stop();
    std::fprintf(stderr, "serve: stopped\n");
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "scripted_server: error: %s\n", e.what());
    return 1;
  }
}
