// options.cpp: CLI11 definition of the `run` command line, mode defaults and range checks.
#include "run/options.h"

#include <cmath>
#include <cstdio>
#include <CLI/CLI.hpp>

#include "common/error.h"
#include "run/getp_io.h"

namespace gptoss {

const char* mode_name(Mode m) {
  switch (m) {
    case Mode::Generate: return "generate";
    case Mode::Chat: return "chat";
    case Mode::Getp: return "getp";
    case Mode::Bench: return "bench";
  }
  return "?";
}

namespace {

// "199999,200002 200012" -> ids; "" or "none" -> no stop ids.
std::vector<int32_t> parse_stop_ids(const std::string& s) {
  std::vector<int32_t> ids;
  if (s == "none") return ids;
  size_t i = 0;
  while (i < s.size()) {
    if (s[i] == ',' || s[i] == ' ') { ++i; continue; }
    size_t j = i;
    while (j < s.size() && s[j] != ',' && s[j] != ' ') ++j;
    std::string tok = s.substr(i, j - i);
    bool digits = !tok.empty() && tok.size() <= 9 &&
                  tok.find_first_not_of("0123456789") == std::string::npos;
    if (!digits) fail("--stop: '%s' is not a token id (expected ids like 199999,200002)", tok.c_str());
    ids.push_back(static_cast<int32_t>(std::stol(tok)));
    i = j;
  }
  return ids;
}

}  // namespace

int parse_cli(int argc, const char* const* argv, RunOptions& opt) {
  CLI::App app{
      "run: gpt-oss inference.\n"
      "  run [MODEL] -m generate -i \"text\"     raw completion streamed to stdout\n"
      "  run [MODEL] -m chat [-y \"instructions\"] harmony chat, one user turn per stdin line\n"
      "  run [MODEL] -m getp -i IN -o OUT       batch evaluation with continuous batching\n"
      "Details: src/run/README.md",
      "run"};
  app.option_defaults()->always_capture_default();
  opt.model_path = GPTOSS_DATA_DIR "/tiny.bin";
  opt.tokenizer_path = GPTOSS_DATA_DIR "/tokenizer.bin";
  std::string mode = "generate", stop = "199999,200002,200012", seed = "1";

  app.add_option("model", opt.model_path, "Model file (the project's format, export-model)");
  app.add_option("-m,--mode", mode, "generate | chat | getp");
  app.add_option("-i,--input", opt.input,
                 "generate: the prompt text; getp: the prompt file (line 1: N, then N prompts, one "
                 "per line; " + getp_limits_text(GetpLimits{}) + ")");
  app.add_option("-o,--output", opt.output, "getp: output file (line i = generated ids of prompt i)");
  app.add_option("-z,--tokenizer", opt.tokenizer_path, "Tokenizer file");
  app.add_option("-n,--max-new", opt.max_new,
                 "Max new tokens (chat: per turn). Default: generate 256, chat 1024, getp 256")
      ->default_str("mode default");
  app.add_option("-T,--temp", opt.temperature,
                 "Sampling temperature, 0 = greedy. Default: getp 0, generate/chat 1.0")
      ->default_str("mode default");
  app.add_option("-p,--top-p", opt.top_p, "Nucleus sampling mass in (0, 1]; 1 = off");
  app.add_option("--top-k", opt.top_k, "Keep the k most likely tokens; 0 = off");
  app.add_option("-s,--seed", seed,
                 "Sampling seed (getp: prompt i samples with its own stream derived from it)");
  app.add_option("-c,--ctx", opt.ctx, "Context length per sequence (max 131072 and the model's)");
  app.add_option("-b,--batch", opt.max_slots,
                 "getp: max concurrent sequences (KV-cache slots). Default: getp on the CPU 32, on the GPU as "
                 "many as its free memory holds at -c (at most 256); else 1")
      ->default_str("mode default");
  app.add_option("--chunk", opt.chunk_tokens,
                 "Per-step token budget: decode rows plus prompt chunks being prefilled. Default: CPU "
                 "256, GPU 512")
      ->default_str("backend default");
  app.add_option("-t,--threads", opt.threads, "CPU threads; 0 = OpenMP default");
  app.add_option("--stop", stop, "Stop token ids, comma separated ('none' = no stop ids)");
  app.add_flag("--ignore-eos", opt.ignore_eos, "Do not stop on the stop ids (benchmarks)");
  app.add_option("--backend", opt.backend,
                 "auto | cpu | gpu. auto: the GPU when this is a GPU build and one is present, else the CPU");
  app.add_option("--kv-cache", opt.kv_cache,
                 "KV-cache element type: bf16 | f32. Default: GPU bf16, CPU f32 (its only choice)");
  app.add_option("--reasoning", opt.reasoning, "chat: reasoning effort low | medium | high");
  app.add_option("-y,--developer", opt.developer, "chat: developer instructions");
  app.add_flag("--show-reasoning", opt.show_reasoning,
               "chat: also show the analysis/commentary channels");
  app.add_option("--micro-batches", opt.micro_batches,
                 "Pipeline: micro-batches in flight around the ring of ranks, 1..64 (0 = ranks)");
  app.add_option("--layers", opt.layers,
                 "Pipeline: layers per rank, e.g. 4,7,7,6 (default: balanced by the cost model)");
  bool no_graphs = false;
  app.add_flag("--no-graphs", no_graphs,
               "GPU: run every step without captured graphs (slower; for compute-sanitizer and "
               "debuggers)");
  app.add_flag("--profile", opt.profile,
               "Print rank 0's host time by phase and the LM head's share of its device time at "
               "the end");
  app.add_option("--transport", opt.transport,
                 "Pipeline: links between GPU ranks: auto (GPU to GPU where the GPUs can reach each "
                 "other, else through MPI) | mpi (always through host memory and MPI)");
  app.add_option("--ring-timeout", opt.ring_timeout_s,
                 "Pipeline: seconds a rank waits for a message before failing (chat: only within a "
                 "turn)");
  app.add_flag("--resume", opt.resume, "getp: continue an interrupted run from OUT.partial");
  app.add_option("--pp", opt.bench_pp, "bench: prompt tokens of the pp test (0 = skip)");
  app.add_option("--getp-prompt", opt.bench_getp_prompt, "bench: prompt tokens per getp sequence");
  app.add_option("--getp-new", opt.bench_getp_new, "bench: new tokens per getp sequence (0 = skip)");
  app.add_option("-r,--reps", opt.bench_reps, "bench: repetitions per test (after one warm-up)");
  app.add_option("--format", opt.bench_format, "bench: output md | csv | json");
  app.add_option("--verify", opt.verify_path,
                 "getp: compare OUT with reference file REF; non-zero exit on any mismatch");

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp&) {
    std::fputs(app.help().c_str(), stdout);
    return 0;
  } catch (const CLI::CallForAllHelp&) {
    std::fputs(app.help().c_str(), stdout);
    return 0;
  } catch (const CLI::ParseError& e) {
    fail("%s (see --help)", e.what());
  }
  opt.gpu_graphs = !no_graphs;
  if (opt.transport != "auto" && opt.transport != "mpi")
    fail("--transport: expected auto or mpi, got '%s'", opt.transport.c_str());

  if (mode == "generate") opt.mode = Mode::Generate;
  else if (mode == "chat") opt.mode = Mode::Chat;
  else if (mode == "getp") opt.mode = Mode::Getp;
  else if (mode == "bench") opt.mode = Mode::Bench;
  else fail("-m: unknown mode '%s' (expected generate, chat, getp or bench)", mode.c_str());
  const bool getp = opt.mode == Mode::Getp, chat = opt.mode == Mode::Chat;
  auto given = [&](const char* name) { return app.count(name) > 0; };

  // Mode defaults.
  const bool bench = opt.mode == Mode::Bench;
  if (bench) {
    if (!given("--max-new")) opt.max_new = 128;
    if (!given("--batch")) opt.max_slots = kDefaultSlotsGetp;
    if (opt.bench_pp < 0 || opt.bench_getp_prompt < 1 || opt.bench_getp_new < 0 || opt.bench_reps < 1)
      fail("-m bench: --pp >= 0, --getp-prompt >= 1, --getp-new >= 0 and -r >= 1 are required");
    if (opt.bench_format != "md" && opt.bench_format != "csv" && opt.bench_format != "json")
      fail("--format: expected md, csv or json, got '%s'", opt.bench_format.c_str());
  }
  if (!given("--max-new") && !bench)
    opt.max_new = getp ? kDefaultMaxNewGetp : chat ? kDefaultMaxNewChat : kDefaultMaxNewGenerate;
  if (!given("--temp")) opt.temperature = getp ? 0.0f : 1.0f;
  opt.chunk_given = given("--chunk");
  opt.batch_given = given("--batch");
  if (!given("--batch") && !bench) opt.max_slots = getp ? kDefaultSlotsGetp : 1;
  opt.stop_ids = parse_stop_ids(stop);
  if (seed.empty() || seed.size() > 20 || seed.find_first_not_of("0123456789") != std::string::npos ||
      (seed.size() == 20 && seed > "18446744073709551615"))
    fail("-s: the seed must be an integer in [0, 2^64), got '%s'", seed.c_str());
  opt.seed = std::stoull(seed);

  // Ranges.
  if (opt.max_new < 1 || opt.max_new > kMaxContext)
    fail("-n: max new tokens must be in [1, %d], got %d", kMaxContext, opt.max_new);
  if (!std::isfinite(opt.temperature) || opt.temperature < 0 || opt.temperature > 100)
    fail("-T: temperature must be in [0, 100], got %g", opt.temperature);
  if (!std::isfinite(opt.top_p) || opt.top_p <= 0 || opt.top_p > 1)
    fail("-p: top-p must be in (0, 1], got %g", opt.top_p);
  if (opt.top_k < 0) fail("--top-k: must be >= 0, got %d", opt.top_k);
  if (opt.ctx < 2 || opt.ctx > kMaxContext)
    fail("-c: context must be in [2, %d], got %d", kMaxContext, opt.ctx);
  if (opt.max_slots < 1 || opt.max_slots > kMaxSlots)
    fail("-b: max concurrent sequences must be in [1, %d], got %d", kMaxSlots, opt.max_slots);
  if (opt.chunk_tokens < 1 || opt.chunk_tokens > kMaxChunk)
    fail("--chunk: per-step token budget must be in [1, %d], got %d", kMaxChunk, opt.chunk_tokens);
  if (opt.threads < 0 || opt.threads > kMaxThreads)
    fail("-t: threads must be in [0, %d], got %d", kMaxThreads, opt.threads);
  if (opt.micro_batches < 0 || opt.micro_batches > 64)
    fail("--micro-batches: must be in [0, 64] (0 = one per rank), got %d", opt.micro_batches);
  if (!std::isfinite(opt.ring_timeout_s) || opt.ring_timeout_s <= 0)
    fail("--ring-timeout: must be a positive number of seconds, got %g", opt.ring_timeout_s);
  if (opt.backend != "auto" && opt.backend != "cpu" && opt.backend != "gpu")
    fail("--backend: expected auto, cpu or gpu, got '%s'", opt.backend.c_str());
#ifndef GPTOSS_HAVE_GPU
  if (opt.backend == "gpu")
    fail("--backend gpu: this build has no GPU backend (configure with -DGPU_BACKEND=CUDA or HIP)");
#endif
  if (!opt.kv_cache.empty() && opt.kv_cache != "bf16" && opt.kv_cache != "f32")
    fail("--kv-cache: expected bf16 or f32, got '%s'", opt.kv_cache.c_str());
  if (opt.reasoning != "low" && opt.reasoning != "medium" && opt.reasoning != "high")
    fail("--reasoning: expected low, medium or high, got '%s'", opt.reasoning.c_str());

  // Flags that belong to one mode.
  auto only = [&](const char* flag, const char* name, bool ok, const char* modes) {
    if (given(flag) && !ok) fail("%s applies to -m %s only", name, modes);
  };
  only("--output", "-o", getp, "getp");
  only("--resume", "--resume", getp, "getp");
  only("--verify", "--verify", getp, "getp");
  only("--batch", "-b", getp || bench, "getp and bench");
  only("--developer", "-y", chat, "chat");
  only("--reasoning", "--reasoning", chat, "chat");
  only("--show-reasoning", "--show-reasoning", chat, "chat");
  if (chat && given("--input"))
    fail("-i does not apply to -m chat (type the user messages on stdin, one per line)");
  if (opt.mode == Mode::Generate && opt.input.empty())
    fail("-m generate needs a prompt: -i \"text\"");
  if (getp) {
    if (opt.input.empty()) fail("-m getp needs the prompt file: -i IN");
    if (opt.output.empty()) fail("-m getp needs the output file: -o OUT");
    if (opt.output == opt.input) fail("-o: output file must differ from the input file");
  }
  return -1;
}

void check_against_model(const RunOptions& opt, const Config& c) {
  if (opt.ctx > c.max_context)
    fail("-c: context %d is larger than the model's maximum %d", opt.ctx, c.max_context);
  if (opt.top_k > c.vocab) fail("--top-k: %d is larger than the vocabulary (%d)", opt.top_k, c.vocab);
  for (int32_t id : opt.stop_ids)
    if (id < 0 || id >= c.vocab)
      fail("--stop: token id %d is outside the vocabulary [0, %d)", id, c.vocab);
}

}  // namespace gptoss
