// options.cpp: CLI11 definition of the `run` command line, mode defaults and range checks.
#include "run/options.h"

#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <CLI/CLI.hpp>

#include "common/data_paths.h"
#include "common/error.h"
#include "backend/backend.h"
#include "common/version.h"
#include "run/getp_io.h"
#include "run/paths.h"

namespace gptoss {

const char* mode_name(Mode m) {
  switch (m) {
    case Mode::Generate: return "generate";
    case Mode::Chat: return "chat";
    case Mode::Getp: return "getp";
    case Mode::Bench: return "bench";
    case Mode::Serve: return "serve";
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
      "  run [MODEL] -m generate -i \"text\"       raw completion streamed to stdout (or -f FILE,\n"
      "                                          or the text on stdin)\n"
      "  run [MODEL] -m chat [-y \"instructions\"]  interactive harmony chat (Ctrl-C stops a turn)\n"
      "  run [MODEL] -m getp -i IN -o OUT         batch evaluation with continuous batching\n"
      "  run [MODEL] -m bench                     prefill, decode and getp throughput\n"
      "  run [MODEL] -m serve [--port 8080]       OpenAI-compatible HTTP server and chat page\n"
      "Details: src/run/README.md",
      "run"};
  app.option_defaults()->always_capture_default()->multi_option_policy(
      CLI::MultiOptionPolicy::TakeLast);  // a flag given twice takes its last value
  app.set_version_flag("--version", version_text("run"));
  app.footer(
      "Defaults found at run time: MODEL is $GPTOSS_MODEL, else tiny.bin beside this program;\n"
      "-z is $GPTOSS_TOKENIZER, else tokenizer.bin beside this program (" + program_dir() + ").\n"
      "Exit status: 0 ok; 1 error; 2 getp --verify found a difference; 130 interrupted by\n"
      "SIGINT (Ctrl-C), 143 by SIGTERM.");
  opt.model_path = default_model_path();
  opt.tokenizer_path = default_tokenizer_path();
  std::string mode = "generate", stop = "199999,200002,200012", seed = "1";

  app.add_option("model", opt.model_path, "Model file (the project's format, export-model)");
  app.add_option("-m,--mode", mode, "generate | chat | getp | bench | serve");
  app.add_option("-i,--input", opt.input,
                 "generate: the prompt text; getp: the prompt file (line 1: N, then N prompts, one "
                 "per line; " + getp_limits_text(GetpLimits{}) + "). - = stdin");
  app.add_option("-f,--file", opt.prompt_file, "generate: read the prompt from this file");
  app.add_option("-o,--output", opt.output,
                 "getp: output file (line i = generated ids of prompt i); - = stdout");
  app.add_option("-z,--tokenizer", opt.tokenizer_path, "Tokenizer file");
  app.add_option("-n,--max-new", opt.max_new,
                 "Max new tokens (chat: per turn; serve: when a request gives none). Default: "
                 "generate 256, chat 1024, getp 256, serve what the context leaves")
      ->default_str("mode default");
  app.add_option("-T,--temp", opt.temperature,
                 "Sampling temperature, 0 = greedy. Default: getp 0, generate/chat 1.0")
      ->default_str("mode default");
  app.add_option("-p,--top-p", opt.top_p, "Nucleus sampling mass in (0, 1]; 1 = off");
  app.add_option("--top-k", opt.top_k, "Keep the k most likely tokens; 0 = off");
  app.add_option("-s,--seed", seed,
                 "Sampling seed (getp: prompt i samples with its own stream derived from it). "
                 "Default at -T > 0: a fresh random seed, printed on stderr")
      ->default_str("random");
  app.add_option("-c,--ctx", opt.ctx, "Context length per sequence (max 131072 and the model's)");
  app.add_option("-b,--batch", opt.max_slots,
                 "getp, serve: max concurrent sequences (KV-cache slots). Default: getp on the CPU 32 "
                 "(at most the number of prompts), serve on the CPU 8, on the GPU as many as its "
                 "free memory holds at -c (getp on one GPU at most 1024 and the number of prompts, "
                 "else at most 256); else 1")
      ->default_str("mode default");
  app.add_option("--chunk", opt.chunk_tokens,
                 "Per-step token budget: decode rows plus prompt chunks being prefilled. Default: CPU "
                 "256, GPU --step-rows (times the micro-batches on a ring)")
      ->default_str("backend default");
  app.add_option("--step-rows", opt.step_rows,
                 "GPU: rows per device step, 512..4096 (a sequence still takes at most 512 of "
                 "them); the default --chunk is this times the micro-batches")
      ->default_str(std::to_string(opt.step_rows));
  app.add_option("-t,--threads", opt.threads, "CPU threads; 0 = OpenMP default");
  app.add_option("--stop", stop, "Stop token ids, comma separated ('none' = no stop ids)");
  app.add_flag("--ignore-eos", opt.ignore_eos, "Do not stop on the stop ids (benchmarks)");
  app.add_option("--backend", opt.backend,
                 "auto | cpu | gpu. auto: the GPU when this is a GPU build and one is present, else the CPU");
  app.add_option("--kv-cache", opt.kv_cache,
                 "KV-cache element type: bf16 | f32. Default: GPU bf16, CPU f32 (its only choice)");
  app.add_option("--precision", opt.precision,
                 "GPU matrix work: fast (activations rounded to bf16/fp16 into the tensor cores, "
                 "fp32 accumulation) | exact (fp32-quality, two MMAs per product; the CPU's "
                 "precision). CPU: exact only")
      ->default_str("GPU " + std::string(kGpuDefaultPrecision));
  app.add_option("--kv-tokens", opt.kv_tokens,
                 "positions the paged KV cache holds for all sequences together (its "
                 "full-attention layers; sliding layers keep their window per sequence). A "
                 "sequence is admitted when its prompt + -n fits; at least -c. Default: CPU -b x "
                 "-c; GPU what its free memory holds, at most -b x -c")
      ->default_str("CPU -b x -c, GPU free memory");
  app.add_option("--kv-block", opt.kv_block,
                 "positions per block of the paged KV cache (GPU: a power of two). GPU: 0 turns "
                 "paging off (every slot keeps -c positions of every layer)")
      ->default_str("32");
  app.add_option("--reasoning", opt.reasoning,
                 "chat, serve: reasoning effort low | medium | high (serve: when a request gives none)");
  app.add_option("-y,--developer", opt.developer, "chat: developer instructions");
  app.add_flag("--show-reasoning", opt.show_reasoning,
               "chat: also show the analysis/commentary channels");
  app.add_option("--micro-batches", opt.micro_batches,
                 "Pipeline: micro-batches in flight around the ring of ranks, 1..64 (0 = ranks)");
  app.add_option("--layers", opt.layers,
                 "Pipeline: layers per rank of a ring, e.g. 4,7,7,6 (default: balanced by the cost "
                 "model)");
  app.add_option("--dp", opt.dp,
                 "Data-parallel rings: the N ranks form R rings of N/R ranks, each a pipeline "
                 "(R must divide N). getp and serve hand prompts and requests to the rings by load "
                 "(-b is per ring); chat, generate and bench run on ring 0 while the others wait. "
                 "Default "
                 "(0): automatic: on GPUs rings of the fewest GPUs that hold the model and the KV "
                 "cache of -b (getp without -b: 64) sequences at -c; on the CPU one ring")
      ->default_str("auto");
  app.add_flag("--no-spawn", opt.no_spawn,
               "One process that sees several GPUs (no launcher, or one task) uses one GPU. "
               "Default: without a launcher it runs itself as mpirun -np N (one rank per GPU); "
               "a launcher's single task stops with the srun/mpirun command that uses them all");
  bool no_graphs = false;
  bool no_decode = false;
  std::string overlap = opt.launch_overlap ? "on" : "off";
  app.add_flag("--no-decode-kernels", no_decode,
               "GPU: run steps of up to 4 rows on the batched kernels instead of the fused decode "
               "kernels (for comparisons)");
  app.add_option("--launch-overlap", overlap,
                 "GPU (NVIDIA): on = the decode and attention kernels start during the previous "
                 "kernel's tail (programmatic dependent launch); off = each waits for the previous "
                 "one. Default on");
  app.add_flag("--no-graphs", no_graphs,
               "GPU: run every step without captured graphs (slower; for compute-sanitizer and "
               "debuggers)");
  app.add_flag("--profile", opt.profile,
               "Print rank 0's host time by phase and the LM head's share of its device time at "
               "the end");
  app.add_option("--transport", opt.transport,
                 "Pipeline: links between GPU ranks: auto (GPU to GPU where the GPUs can reach each "
                 "other, else through MPI) | mpi (always through host memory and MPI)");
  app.add_option("--head-split", opt.head_split,
                 "Pipeline: the LM head split over the ranks of a ring (each its slice of the "
                 "vocabulary and best candidates; rank 0 chooses exactly as from the whole head): "
                 "auto (CPU rings, when the cost model gains >= 2% and micro-batches hold several "
                 "sequences) | on (CPU or GPU) | off");
  app.add_option("--ring-timeout", opt.ring_timeout_s,
                 "Pipeline: seconds a rank waits for a message before failing (chat: only within a "
                 "turn)");
  app.add_flag("--resume", opt.resume, "getp: continue an interrupted run from OUT.partial");
  app.add_option("--pp", opt.bench_pp, "bench: prompt tokens of the pp test (0 = skip)");
  app.add_option("--getp-prompt", opt.bench_getp_prompt, "bench: prompt tokens per getp sequence");
  app.add_option("--getp-new", opt.bench_getp_new, "bench: new tokens per getp sequence (0 = skip)");
  app.add_option("-r,--reps", opt.bench_reps, "bench: repetitions per test (after one warm-up)");
  app.add_option("--format", opt.bench_format, "bench: output md | csv | json");
  app.add_option("--pp-batch", opt.bench_pp_batch,
                 "bench: prompts of --pp tokens prefilled at once in the pp test (default 1)");
  app.add_option("--tg-batch", opt.bench_tg_batch,
                 "bench: sequences decoding at once in the tg test (default 1)");
  app.add_option("--peak-gbs", opt.peak_gbs,
                 "bench: read bandwidth (GB/s) the limits use. Default: measured on the GPU; none "
                 "on the CPU");
  app.add_option("--peak-tflops", opt.peak_tflops,
                 "bench: matrix peak (TFLOP/s) the limits use. Default: the GPU's data-sheet dense "
                 "bf16 figure; none on the CPU");
  app.add_option("--host", opt.host, "serve: address to listen on (default loopback only)");
  app.add_option("--port", opt.port, "serve: TCP port (0 = any free port, printed at start)");
  app.add_option("--api-key", opt.api_key,
                 "serve: require 'Authorization: Bearer KEY' on /v1/* (default: no key)");
  app.add_option("--max-queue", opt.max_queue,
                 "serve: requests waiting for a slot beyond the -b running ones; more get 429");
  app.add_option("--model-name", opt.model_name,
                 "serve: the model id clients send (default: MODEL's file name without .bin)");
  app.add_option("--shutdown-grace", opt.shutdown_grace_s,
                 "serve: seconds in-flight requests get to finish after SIGINT/SIGTERM");
  app.add_option("--verify", opt.verify_path,
                 "getp: compare OUT with reference file REF (read before the model loads); exit 2 on any "
                 "difference");

  app.add_option("--progress", opt.progress_s,
                 "getp: seconds between progress lines when stderr is not a terminal (0 = none)");

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp&) {
    std::fputs(app.help().c_str(), stdout);
    return 0;
  } catch (const CLI::CallForAllHelp&) {
    std::fputs(app.help().c_str(), stdout);
    return 0;
  } catch (const CLI::CallForVersion& e) {
    std::printf("%s\n", e.what());
    return 0;
  } catch (const CLI::ParseError& e) {
    std::string msg = e.what();
    for (char& ch : msg)
      if (ch == '\n') ch = ' ';
    fail("%s (see --help)", msg.c_str());
  }
  opt.gpu_graphs = !no_graphs;
  opt.decode_kernels = !no_decode;
  if (overlap != "on" && overlap != "off")
    fail("--launch-overlap: expected on or off, got '%s'", overlap.c_str());
  opt.launch_overlap = overlap == "on";
  if (opt.head_split != "auto" && opt.head_split != "on" && opt.head_split != "off")
    fail("--head-split: expected auto, on or off, got '%s'", opt.head_split.c_str());
  if (opt.transport != "auto" && opt.transport != "mpi")
    fail("--transport: expected auto or mpi, got '%s'", opt.transport.c_str());

  if (mode == "generate") opt.mode = Mode::Generate;
  else if (mode == "chat") opt.mode = Mode::Chat;
  else if (mode == "getp") opt.mode = Mode::Getp;
  else if (mode == "bench") opt.mode = Mode::Bench;
  else if (mode == "serve") opt.mode = Mode::Serve;
  else fail("-m: unknown mode '%s' (expected generate, chat, getp, bench or serve)", mode.c_str());
  const bool getp = opt.mode == Mode::Getp, chat = opt.mode == Mode::Chat,
             serve = opt.mode == Mode::Serve;
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
    if (opt.bench_pp_batch < 1 || opt.bench_tg_batch < 1)
      fail("-m bench: --pp-batch and --tg-batch must be >= 1");
    if (!std::isfinite(opt.peak_gbs) || opt.peak_gbs < 0 || !std::isfinite(opt.peak_tflops) ||
        opt.peak_tflops < 0)
      fail("-m bench: --peak-gbs and --peak-tflops must be numbers >= 0");
    // The tests' batches need as many slots: without -b the session takes them.
    const int need = std::max(opt.bench_pp_batch, opt.bench_tg_batch);
    if (!given("--batch")) opt.max_slots = std::max(opt.max_slots, need);
    else if (need > opt.max_slots)
      fail("-m bench: --pp-batch/--tg-batch %d needs -b >= %d (-b is %d)", need, need,
           opt.max_slots);
  }
  if (!given("--max-new") && !bench)
    opt.max_new = getp ? kDefaultMaxNewGetp : chat ? kDefaultMaxNewChat : serve ? opt.ctx
                                                                            : kDefaultMaxNewGenerate;
  if (!given("--temp")) opt.temperature = getp ? 0.0f : 1.0f;
  opt.chunk_given = given("--chunk");
  opt.batch_given = given("--batch");
  if (!given("--batch") && !bench) opt.max_slots = getp ? kDefaultSlotsGetp : serve ? kDefaultSlotsServe : 1;
  opt.stop_ids = parse_stop_ids(stop);
  if (seed.empty() || seed.size() > 20 || seed.find_first_not_of("0123456789") != std::string::npos ||
      (seed.size() == 20 && seed > "18446744073709551615"))
    fail("-s: the seed must be an integer in [0, 2^64), got '%s'", seed.c_str());
  opt.seed = std::stoull(seed);
  opt.seed_given = given("--seed");
  opt.input_given = given("--input");

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
  if (opt.step_rows < kGpuSeqStepRows || opt.step_rows > kGpuMaxStepRows)
    fail("--step-rows: rows per device step must be in [%d, %d], got %d", kGpuSeqStepRows,
         kGpuMaxStepRows, opt.step_rows);
  if (opt.chunk_tokens < 1 || opt.chunk_tokens > kMaxChunk)
    fail("--chunk: per-step token budget must be in [1, %d], got %d", kMaxChunk, opt.chunk_tokens);
  if (opt.threads < 0 || opt.threads > kMaxThreads)
    fail("-t: threads must be in [0, %d], got %d", kMaxThreads, opt.threads);
  if (opt.dp < 0 || opt.dp > 4096)
    fail("--dp: the number of rings must be in [1, 4096] (0 = automatic), got %d", opt.dp);
  if (opt.micro_batches < 0 || opt.micro_batches > 64)
    fail("--micro-batches: must be in [0, 64] (0 = one per rank), got %d", opt.micro_batches);
  if (!std::isfinite(opt.progress_s) || opt.progress_s < 0)
    fail("--progress: must be a number of seconds >= 0, got %g", opt.progress_s);
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
  if (!opt.precision.empty() && opt.precision != "exact" && opt.precision != "fast")
    fail("--precision: expected exact or fast, got '%s'", opt.precision.c_str());
  if (given("--kv-block") && (opt.kv_block < 0 || opt.kv_block > 4096))
    fail("--kv-block: positions per block must be in [1, 4096] (GPU: 0 = no paging), got %d",
         opt.kv_block);
  if (given("--kv-block") && opt.kv_block == 0 && given("--kv-tokens"))
    fail("--kv-tokens sizes the paged KV cache, which --kv-block 0 turns off");
  if (given("--kv-tokens") && (opt.kv_tokens < opt.ctx || opt.kv_tokens > (int64_t{1} << 31) - 1))
    fail("--kv-tokens: the paged KV cache must hold at least one sequence of -c %d and at most "
         "2^31-1 positions, got %lld",
         opt.ctx, static_cast<long long>(opt.kv_tokens));
  if (opt.reasoning != "low" && opt.reasoning != "medium" && opt.reasoning != "high")
    fail("--reasoning: expected low, medium or high, got '%s'", opt.reasoning.c_str());

  // Flags that belong to one mode.
  auto only = [&](const char* flag, const char* name, bool ok, const char* modes) {
    if (given(flag) && !ok) fail("%s applies to -m %s only", name, modes);
  };
  only("--output", "-o", getp, "getp");
  only("--resume", "--resume", getp, "getp");
  only("--verify", "--verify", getp, "getp");
  only("--progress", "--progress", getp, "getp");
  only("--file", "-f", opt.mode == Mode::Generate, "generate");
  only("--batch", "-b", getp || bench || serve, "getp, bench and serve");
  only("--developer", "-y", chat, "chat");
  only("--reasoning", "--reasoning", chat || serve, "chat and serve");
  for (const char* f : {"--host", "--port", "--api-key", "--max-queue", "--model-name", "--shutdown-grace"})
    only(f, f, serve, "serve");
  if (serve) {
    if (given("--input")) fail("-i does not apply to -m serve (clients send the prompts)");
    if (opt.port < 0 || opt.port > 65535) fail("--port: must be in [0, 65535], got %d", opt.port);
    if (opt.max_queue < 0 || opt.max_queue > 100000)
      fail("--max-queue: must be in [0, 100000], got %d", opt.max_queue);
    if (!std::isfinite(opt.shutdown_grace_s) || opt.shutdown_grace_s < 0 || opt.shutdown_grace_s > 3600)
      fail("--shutdown-grace: must be in [0, 3600] seconds, got %g", opt.shutdown_grace_s);
    if (opt.host.empty()) fail("--host: empty address");
  }
  only("--show-reasoning", "--show-reasoning", chat, "chat");
  for (const char* f : {"--pp-batch", "--tg-batch", "--peak-gbs", "--peak-tflops"})
    only(f, f, bench, "bench");
  if (chat && given("--input"))
    fail("-i does not apply to -m chat (type the user messages on stdin, one per line)");
  // generate without -i or -f reads its prompt from stdin (the mode refuses a terminal there).
  if (opt.mode == Mode::Generate && given("--input") && given("--file"))
    fail("-i and -f both give the prompt: use one");
  if (getp) {
    if (opt.input.empty()) fail("-m getp needs the prompt file: -i IN (- = stdin)");
    if (opt.output.empty()) fail("-m getp needs the output file: -o OUT (- = stdout)");
    if (opt.output == opt.input && opt.output != "-")
      fail("-o: output file must differ from the input file");
    if (opt.resume && opt.output == "-") fail("--resume needs -o to be a file (not stdout)");
    if (!opt.verify_path.empty() && opt.verify_path == opt.output && opt.output != "-")
      fail("--verify: the reference must be another file than -o %s", opt.output.c_str());
    if (opt.input == "-" && opt.verify_path == "-")
      fail("-i - and --verify -: stdin can be read once only");
  }
  return -1;
}

std::string pick_fresh_seed(RunOptions& opt) {
  if (opt.seed_given || !(opt.temperature > 0)) return "";
  std::random_device rd;
  opt.seed = (static_cast<uint64_t>(rd()) << 32) ^ rd();
  return strfmt("seed: %llu (random; -s %llu repeats this run)", (unsigned long long)opt.seed,
                (unsigned long long)opt.seed);
}

void check_model_paths(const RunOptions& opt) {
  // Only that they exist and can be read: what they are (a folder, a GGUF file) the loaders say
  // in more detail.
  auto check = [](const std::string& path, const std::string& dflt, const char* what,
                  const char* how) {
    if (::access(path.c_str(), R_OK) == 0) return;
    const int e = errno;
    if (path != dflt) fail("%s %s: %s", what, path.c_str(), std::strerror(e));
    fail("%s %s: %s (the default: %s)", what, path.c_str(), std::strerror(e), how);
  };
  check(opt.model_path, default_model_path(), "model",
        "give MODEL, or set GPTOSS_MODEL; launch/setup.sh builds tiny.bin");
  check(opt.tokenizer_path, default_tokenizer_path(), "tokenizer",
        "give -z FILE, or set GPTOSS_TOKENIZER; launch/setup.sh builds tokenizer.bin");
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
