// mode_serve.cpp: `run -m serve`: the OpenAI-compatible HTTP server (src/serve, docs/server.md)
// on rank 0, in front of the same session (model, tokenizer, ring pipeline) and scheduler as getp;
// ranks > 0 serve their layers as in every mode (main.cpp). This thread is the engine thread
// (src/serve/engine_loop.h); HTTP runs on the server's own threads.
//
// Signals: the first SIGINT/SIGTERM stops accepting requests (503) and gives the ones in flight
// --shutdown-grace seconds to finish, the second cuts them at once (their clients get an error),
// a third kills. Then the ring is shut down and the process exits 0.
#include <signal.h>
#include <time.h>

#include <atomic>
#include <cstdio>
#include <cstring>
#include <memory>

#include "common/error.h"
#include "run/modes.h"
#include "run/rings.h"
#include "run/rings_jobs.h"
#include "run/session.h"
#include "serve/connection.h"
#include "serve/engine_loop.h"
#include "serve/http_server.h"

namespace gptoss {

namespace {

volatile sig_atomic_t g_signals = 0;
void on_signal(int sig) {
  g_signals = g_signals + 1;
  if (g_signals >= 2) signal(sig, SIG_DFL);  // the third one kills
}
void install_handlers() {
  struct sigaction sa;
  std::memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
}

// MODEL's file name without its folder and ".bin".
std::string model_id_of(const RunOptions& opt) {
  if (!opt.model_name.empty()) return opt.model_name;
  std::string n = opt.model_path;
  if (size_t slash = n.find_last_of('/'); slash != std::string::npos) n = n.substr(slash + 1);
  if (n.size() > 4 && n.compare(n.size() - 4, 4, ".bin") == 0) n.resize(n.size() - 4);
  return n.empty() ? "model" : n;
}

// Data-parallel rings (--dp R): a request goes to the ring with the fewest requests per slot
// (ring 0 is this process's own scheduler).
class ServeRings : public serve::Elsewhere {
 public:
  explicit ServeRings(int local_slots)
      : o_(local_slots), local_slots_(local_slots), placed_(static_cast<size_t>(o_.count()), 0) {}
  int place(int local_held) override {
    int best = 0;
    double best_fill = static_cast<double>(local_held) / local_slots_;
    for (int k = 1; k < o_.count(); ++k) {
      const double fill = static_cast<double>(o_.outstanding(k)) / o_.slots(k);
      if (fill < best_fill) {
        best = k;
        best_fill = fill;
      }
    }
    ++placed_[static_cast<size_t>(best)];
    return best;
  }
  std::string placed() const {
    std::string s;
    for (size_t k = 0; k < placed_.size(); ++k) s += strfmt("%s%zu", k ? ", " : "", placed_[k]);
    return s;
  }
  void submit(int ring, const Request& r, const SamplerParams& p) override {
    o_.submit(ring, r, p);
    o_.flush();
  }
  bool cancel(uint64_t id) override { return o_.cancel(id); }
  bool poll(const std::function<void(uint64_t, int32_t)>& on_token,
            const std::function<void(Finished&&)>& on_finish) override {
    return o_.poll(on_token, [&](int, Finished&& f) { on_finish(std::move(f)); });
  }
  size_t outstanding() const override { return o_.outstanding(); }
  int slots() const {
    int n = 0;
    for (int k = 0; k < o_.count(); ++k) n += o_.slots(k);
    return n;
  }
  // The end: every ring finishes what it holds (nothing is left after the engine loop), says
  // Done, and is told Finish.
  void end() {
    o_.end();
    while (!o_.all_done()) {
      if (!o_.poll({}, [](int, Finished&&) {})) {
        const timespec ts{0, 1'000'000};
        nanosleep(&ts, nullptr);
      }
    }
    o_.finish();
  }

 private:
  OtherRings o_;
  int local_slots_;
  std::vector<size_t> placed_;  // requests per ring
};

}  // namespace

int run_serve(const RunOptions& given) {
  install_handlers();
  RunOptions opt = given;
  // Before the model loads (minutes for a large one): the files, and is the address usable?
  check_model_paths(opt);
  if (opt.port != 0)
    if (std::string why = serve::cannot_listen(opt.host, opt.port); !why.empty())
      fail("serve: cannot listen on %s:%d: %s", opt.host.c_str(), opt.port, why.c_str());
  // Requests without a seed sample from streams derived from this one: fresh unless -s is given.
  const std::string seed_note = pick_fresh_seed(opt);
  Session s = open_session(opt, opt.max_slots);
  if (!seed_note.empty()) std::fprintf(stderr, "%s\n", seed_note.c_str());

  // Several rings: the other rings' leaders meet this process here (collective) and take a share
  // of the requests.
  std::unique_ptr<ServeRings> others;
  if (rings().dp > 1) others = std::make_unique<ServeRings>(s.slots);

  serve::ServerConfig cfg;
  cfg.host = opt.host;
  cfg.port = opt.port;
  cfg.api_key = opt.api_key;
  cfg.slots = others ? others->slots() : s.slots;
  cfg.max_queue = opt.max_queue;
  cfg.limits.model_id = model_id_of(opt);
  cfg.limits.ctx = opt.ctx;
  cfg.limits.vocab = s.tokenizer->vocab_size();
  cfg.limits.default_max_tokens = opt.max_new;
  cfg.limits.temperature = opt.temperature;
  cfg.limits.top_p = opt.top_p;
  cfg.limits.top_k = opt.top_k;
  cfg.limits.reasoning = opt.reasoning;
  cfg.stop_ids = opt.ignore_eos ? std::vector<int32_t>{} : opt.stop_ids;

  serve::Inbox inbox;
  serve::Metrics metrics;
  serve::HttpServer http(cfg, *s.tokenizer, inbox, metrics);
  http.start();
  std::fprintf(
      stderr,
      "serve: listening on http://%s:%d (model '%s', %d sequence%s at once, %d more may "
      "wait%s); the chat page is at /\n",
      cfg.host.find(':') != std::string::npos ? ("[" + cfg.host + "]").c_str() : cfg.host.c_str(),
      http.port(), cfg.limits.model_id.c_str(), cfg.slots, cfg.slots == 1 ? "" : "s", cfg.max_queue,
      cfg.api_key.empty() ? "" : "; API key required");
  std::fflush(stderr);

  const SchedulerOptions so = s.scheduler_options(opt);
  serve::EngineLoop loop(inbox, metrics, [&](uint64_t id) { return request_seed(opt.seed, id); },
                         others.get());
  Scheduler sch(so, loop.chooser_factory());
  auto stop_level = [&] {
    const int n = g_signals;
    if (n >= 1) http.drain();
    return n >= 2 ? 2 : n;
  };
  const size_t cut = loop.run(
      sch,
      [&](Scheduler& sc, const std::function<bool()>& should_stop,
          const std::function<void()>& after_commit, const std::function<void()>& before_plan) {
        s.run(sc, should_stop, after_commit, before_plan);
      },
      stop_level, opt.shutdown_grace_s);
  // What the loop did, not which signal came: the grace's end cuts too, and a second signal
  // finds nothing to cut when everything had finished.
  if (cut > 0)
    std::fprintf(stderr, "serve: %zu request%s in flight cut; stopping\n", cut, cut == 1 ? "" : "s");
  else
    std::fprintf(stderr, "serve: no request in flight; stopping\n");
  http.stop();
  if (others) {
    others->end();
    std::fprintf(stderr, "serve: requests per ring %s\n", others->placed().c_str());
  }
  s.finish();
  const SchedulerStats& st = sch.stats();
  std::fprintf(stderr, "serve: stopped after %llu prompt and %llu generated tokens%s\n",
               (unsigned long long)st.prompt_rows, (unsigned long long)st.generated,
               others ? " on ring 0" : "");
  return 0;
}

}  // namespace gptoss
