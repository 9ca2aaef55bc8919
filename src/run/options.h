// options.h: the `run` program's command line (CLI11): every flag, its default per mode, and the
// range checks that can be made before the model is loaded (check_against_model() does the rest).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "model/config.h"

namespace gptoss {

enum class Mode { Generate, Chat, Getp, Bench, Serve };
const char* mode_name(Mode m);

struct RunOptions {
  std::string model_path;      // positional MODEL
  Mode mode = Mode::Generate;  // -m
  std::string input;           // -i: prompt text (generate) or prompt file (getp); "-" = stdin
  bool input_given = false;    // -i was given
  std::string prompt_file;     // -f: generate's prompt from a file ("-" = stdin)
  std::string output;          // -o: getp output file ("-" = stdout)
  std::string tokenizer_path;  // -z
  int max_new = 0;             // -n: max new tokens (per turn in chat); mode default if not given
  float temperature = 0.0f;    // -T
  float top_p = 1.0f;          // -p
  int top_k = 0;               // --top-k
  uint64_t seed = 1;           // -s
  bool seed_given = false;     // -s was given (else sampling at T > 0 takes a fresh seed)
  int ctx = 4096;              // -c
  int max_slots = 1;           // -b
  bool batch_given = false;    // -b was given (getp on the GPU otherwise sizes it from memory)
  int chunk_tokens = 256;      // --chunk: per-step token budget (decode rows + prompt chunks)
  int step_rows = 512;         // --step-rows: GPU rows per device step (BackendOptions::step_rows)
  int64_t getp_prompts = 0;    // getp: the number of prompts (cap_getp_slots sets it on every rank)
  bool chunk_given = false;    // --chunk was given (else the session picks the backend's default)
  int threads = 0;             // -t (0 = OpenMP default)
  std::vector<int32_t> stop_ids{199999, 200002, 200012};  // --stop
  bool ignore_eos = false;     // --ignore-eos
  std::string backend = "auto"; // --backend: auto | cpu | gpu
  std::string kv_cache;          // --kv-cache: "" (backend default) | bf16 | f32
  std::string precision;         // --precision: "" (backend default) | exact | fast
  int64_t kv_tokens = 0;         // --kv-tokens: positions in the paged pool; 0 = -b x -c
  int kv_block = -1;             // --kv-block: positions per block of the paged pool; -1 = 32;
                                 // 0 = GPU: no paging (every slot keeps -c positions)
  std::string reasoning = "medium";  // --reasoning (chat)
  std::string developer;       // -y (chat)
  bool show_reasoning = false; // --show-reasoning (chat)
  bool resume = false;         // --resume (getp)
  std::string verify_path;     // --verify REF (getp)
  double progress_s = 5;       // --progress: getp, seconds between progress lines in a log
  // -m bench (src/run/mode_bench.cpp); -n = tg tokens, -b = getp concurrency there.
  int bench_pp = 512;           // --pp: prompt tokens of the pp test (0 = skip)
  int bench_getp_prompt = 1024; // --getp-prompt
  int bench_getp_new = 1024;    // --getp-new (0 = skip the getp test)
  int bench_reps = 3;           // -r
  std::string bench_format = "md";  // --format md | csv | json
  int bench_pp_batch = 1;       // --pp-batch: prompts prefilled at once in the pp test
  int bench_tg_batch = 1;       // --tg-batch: sequences decoding at once in the tg test
  double peak_gbs = 0;          // --peak-gbs: read bandwidth for the limits (0 = measure / none)
  double peak_tflops = 0;       // --peak-tflops: matrix peak for the limits (0 = data sheet / none)
  int micro_batches = 0;       // --micro-batches: in flight around the ring (0 = ranks)
  std::string layers;          // --layers 4,7,7,6: layers per rank ("" = by the cost model)
  int dp = 0;                  // --dp R: data-parallel rings of N/R ranks (src/run/rings.h);
                               // 0 = automatic (src/run/shape.h)
  double ring_timeout_s = 300; // --ring-timeout: a stage waiting longer for a message fails
  bool gpu_graphs = true;      // --no-graphs: GPU steps without captured graphs (debuggers)
  bool decode_kernels = true;  // --no-decode-kernels: small GPU steps on the batched kernels
  bool launch_overlap = true;  // --launch-overlap on|off (GPU, NVIDIA; BackendOptions)
  bool profile = false;        // --profile: rank 0's time by phase at the end (pipeline)
  bool no_spawn = false;       // --no-spawn: one process that sees several GPUs uses one
  std::string transport = "auto";  // --transport auto | mpi: links between GPU ranks
  std::string head_split = "auto";  // --head-split auto | on | off: the LM head over the ranks
  // -m serve (src/serve, docs/server.md)
  std::string host = "127.0.0.1";  // --host
  int port = 8080;                 // --port (0 = any free port)
  std::string api_key;             // --api-key ("" = none)
  int max_queue = 64;              // --max-queue: requests waiting beyond the -b running ones
  std::string model_name;          // --model-name: the id clients send ("" = MODEL's file name)
  double shutdown_grace_s = 10;    // --shutdown-grace: in-flight requests' time to finish
};

// Exit status of `run` (documented in --help and src/run/README.md); a signal ends it with
// 128 + the signal (130 SIGINT, 143 SIGTERM).
inline constexpr int kExitOk = 0, kExitError = 1, kExitVerifyMismatch = 2;

// Mode defaults (documented in --help and src/run/README.md).
inline constexpr int kDefaultMaxNewGenerate = 256, kDefaultMaxNewChat = 1024,
                     kDefaultMaxNewGetp = 256, kDefaultSlotsGetp = 32, kDefaultSlotsServe = 8;
inline constexpr int kMaxContext = 131072, kMaxSlots = 16384, kMaxChunk = 65536,
                     kMaxThreads = 4096;

// Parses argv into opt. Returns -1 to go on, or an exit code (0 after --help or --version, which
// it prints to stdout). A bad flag or value throws Error with a one-line message. A flag given
// twice takes its last value.
int parse_cli(int argc, const char* const* argv, RunOptions& opt);

// Sampling (T > 0) without -s: sets opt.seed to a fresh random seed and returns the line that
// says so on stderr ("seed: S (random; -s S repeats this run)"); "" when there is nothing to do.
std::string pick_fresh_seed(RunOptions& opt);

// The model and tokenizer files exist and can be read (before anything is loaded); a default that
// is missing says how to give one.
void check_model_paths(const RunOptions& opt);

// The checks that need the model's config: ctx <= max_context, stop ids and top-k < vocab,
// -n fits the context. Throws Error naming the flag.
void check_against_model(const RunOptions& opt, const Config& c);

}  // namespace gptoss
