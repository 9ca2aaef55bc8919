// session.cpp: loading and describing model, tokenizer and the ring pipeline (one process is a
// ring of one); the stage worker of ranks > 0; per-request samplers.
#include "run/session.h"

#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <tuple>

#include "comm/device_pick.h"
#include "comm/world.h"
#include "common/error.h"
#include "backend/backend.h"
#include "pipeline/pipeline.h"
#include "run/rings.h"
#include "run/shape.h"
#ifdef GPTOSS_HAVE_GPU
#include "backend_gpu/gpu_backend.h"
#endif

namespace gptoss {

double now_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

uint64_t request_seed(uint64_t seed, uint64_t id) {
  uint64_t z = seed + 0x9E3779B97F4A7C15ull * (id + 1);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}


ChooserFactory sampler_factory(const RunOptions& opt) {
  SamplerParams base;
  base.temperature = opt.temperature;
  base.top_k = opt.top_k;
  base.top_p = opt.top_p;
  base.seed = opt.seed;
  return [base](uint64_t id) -> std::unique_ptr<TokenChooser> {
    SamplerParams p = base;
    p.seed = request_seed(base.seed, id);
    return std::make_unique<SamplerChooser>(p);
  };
}

std::unique_ptr<Tokenizer> load_tokenizer(const RunOptions& opt, double* load_s) {
  double t0 = now_seconds();
  auto tok = std::make_unique<Tokenizer>(opt.tokenizer_path);
  if (load_s) *load_s = now_seconds() - t0;
  return tok;
}

Session::Session() = default;
Session::Session(Session&&) noexcept = default;
Session::~Session() = default;

namespace {

// Slots: getp's, bench's and serve's -b; generate and chat hold one sequence. The same on every
// rank.
int session_slots(const RunOptions& opt) {
  return opt.mode == Mode::Getp || opt.mode == Mode::Bench || opt.mode == Mode::Serve
             ? opt.max_slots
             : 1;
}

// The ring this rank belongs to (rings.h): the whole world unless --dp splits it.
MPI_Comm ring_comm() { return rings().ring_comm; }
int ring_size() { return rings().ring_size; }

static_assert(RunOptions{}.step_rows == BackendOptions{}.step_rows, "one default step size");

// The per-step token budget: --chunk, else the backend's default. CPU: 256. GPU: one device step
// (--step-rows) per step (its steps cost little more at 512 rows than at 256); with several ranks
// each micro-batch gets that whole step (the pipeline divides the budget among the M
// micro-batches in flight), since a GPU stage's cost per micro-batch barely shrinks with its rows:
// 2 ranks at 128 prompt tokens per micro-batch measured no faster than one GPU
// (docs/performance.md).
// getp on GPUs without -b sizes the batch from free memory (0 = auto), at most 256 per
// micro-batch in flight on a ring, and at most kGetpAutoSlotsOneGpu on one GPU: with the paged
// KV cache more sequences pay there (H100, 20b 1k/1k, 2026-12-07: b256 7 328, b512 7 790, b1024
// 8 137 output tok/s; docs/performance.md). serve keeps 256.
bool auto_slots_for(const RunOptions& opt, const std::string& backend) {
  return backend == "gpu" && (opt.mode == Mode::Getp || opt.mode == Mode::Serve) && !opt.batch_given;
}
int micro_batches_for(const RunOptions& opt, int ranks) {
  return ranks == 1 ? 1 : opt.micro_batches > 0 ? opt.micro_batches : ranks;
}
constexpr int kGetpAutoSlotsOneGpu = 1024;
int auto_slots_cap(const RunOptions& opt, int ranks) {
  if (ranks == 1 && opt.mode == Mode::Getp) {
    const int64_t want = opt.getp_prompts > 0 ? opt.getp_prompts : kGetpAutoSlotsOneGpu;
    return static_cast<int>(std::min<int64_t>({kMaxSlots, kGetpAutoSlotsOneGpu, want}));
  }
  return std::min(kMaxSlots, 256 * micro_batches_for(opt, ranks));
}

int chunk_tokens_for(const RunOptions& opt, const std::string& backend, int ranks) {
  if (opt.chunk_given || backend != "gpu") return opt.chunk_tokens;
  return std::min(kMaxChunk, opt.step_rows * micro_batches_for(opt, ranks));
}

PipelineOptions pipeline_options(const RunOptions& opt, const std::string& backend) {
  PipelineOptions po;
  po.ctx = opt.ctx;
  po.max_slots = auto_slots_for(opt, backend) ? 0 : session_slots(opt);
  po.max_auto_slots = auto_slots_cap(opt, ring_size());
  po.chunk_tokens = chunk_tokens_for(opt, backend, ring_size());
  po.micro_batches = opt.micro_batches;
  po.layers = opt.layers;
  // chat waits on a person between turns and serve on clients between requests: no time limit
  // on the ring's waits (a dead rank still ends the job through the launcher), but rank 0 gives a
  // turn's micro-batches --ring-timeout to come back, so a stuck rank ends the job too. Otherwise
  // --ring-timeout everywhere.
  const bool idles = opt.mode == Mode::Chat || opt.mode == Mode::Serve;
  po.timeout_s = idles ? 1e9 : opt.ring_timeout_s;
  po.turn_timeout_s = opt.ring_timeout_s;
  po.profile = opt.profile;
  po.allow_ipc = opt.transport != "mpi";
  po.head_split = opt.head_split;
  po.head_slices = true;  // both backends compute slices of the LM head
  // GPU rings split the head with --head-split on only (pipeline.h head_split_auto says why).
  po.head_split_auto = backend == "cpu";
  return po;
}

void set_threads(const RunOptions& opt) {
  if (opt.threads > 0) omp_set_num_threads(opt.threads);
}

#ifdef GPTOSS_HAVE_GPU
// The GPU this rank uses: GPTOSS_DEVICE (launch/bind.sh sets it: an index among the visible GPUs),
// else the one of its local rank (comm::pick_local_device).
int gpu_for_this_rank() {
  const int n = gpu_device_count();
  if (n <= 0) fail("--backend gpu: this rank sees no GPU");
  if (const char* v = std::getenv("GPTOSS_DEVICE"); v && *v) {
    char* end = nullptr;
    const long d = std::strtol(v, &end, 10);
    if (*end != '\0' || d < 0 || d >= n)
      fail("GPTOSS_DEVICE=%s: expected a GPU index in [0, %d) (this rank sees %d GPU%s)", v, n, n,
           n == 1 ? "" : "s");
    return static_cast<int>(d);
  }
  return comm::pick_local_device(n);
}
#endif

// The paged KV cache (SchedulerOptions, docs/architecture.md): positions per block and blocks in
// the pool, the same on every rank (Pipeline::kv_blocks). The CPU always pages, its default pool
// -b x -c (the memory an unpaged cache takes). The GPU pages unless --kv-block 0, its pool (blocks
// 0 here) what free memory holds, at most -b x -c: each rank sizes its own and the ring takes
// the least.
std::pair<int, int> kv_paging(const RunOptions& opt, const std::string& backend) {
  if (opt.kv_block == 0 && backend == "cpu")
    throw comm::WorldError("--kv-block 0: the CPU backend always pages its KV cache; give 1..4096 "
                           "positions per block");
  if (opt.kv_block == 0) return {0, 0};
  const int64_t B = opt.kv_block > 0 ? opt.kv_block : 32;
  const int64_t per_seq = (opt.ctx + B - 1) / B;
  const int64_t blocks = opt.kv_tokens > 0       ? (opt.kv_tokens + B - 1) / B
                         : backend == "cpu"     ? per_seq * session_slots(opt)
                                                : 0;
  if (blocks > (int64_t{1} << 31) - 1)
    throw comm::WorldError(strfmt("KV cache of %lld blocks of %lld positions is too large",
                                  static_cast<long long>(blocks), static_cast<long long>(B)));
  return {static_cast<int>(B), static_cast<int>(blocks)};
}

// This rank's backend: the CPU over the mapped weights, or (GPU builds, --backend gpu) the GPU
// backend on the rank's own device (GPTOSS_DEVICE, else its local rank among the visible GPUs).
BackendFactory backend_factory(const RunOptions& opt, const ModelFile& model,
                               const std::string& backend) {
  BackendOptions bo;
  bo.ctx = opt.ctx;
  bo.max_slots = auto_slots_for(opt, backend) ? 0 : session_slots(opt);  // 0: the ranks agree
  bo.max_auto_slots = auto_slots_cap(opt, ring_size());                 // on the least
  bo.threads = opt.threads;
  bo.kv_cache = opt.kv_cache;
  bo.precision = opt.precision;
  bo.gpu_graphs = opt.gpu_graphs;
  bo.decode_kernels = opt.decode_kernels;
  bo.launch_overlap = opt.launch_overlap;
  bo.step_rows = opt.step_rows;
  std::tie(bo.kv_block_tokens, bo.kv_blocks) = kv_paging(opt, backend);
#ifdef GPTOSS_HAVE_GPU
  if (backend == "gpu") {
    bo.device = gpu_for_this_rank();
    return [&model, bo](int first, int last, bool rank0) {
      return make_gpu_backend(model, bo, first, last, rank0);
    };
  }
#endif
  // Every rank checks the same options: a WorldError, printed once by rank 0.
  if (!opt.kv_cache.empty() && opt.kv_cache != "f32")
    throw comm::WorldError(strfmt("--kv-cache %s: the CPU backend keeps its KV cache in f32 only",
                                  opt.kv_cache.c_str()));
  if (!opt.precision.empty() && opt.precision != "exact")
    throw comm::WorldError(strfmt("--precision %s: the CPU backend computes in fp32 only (exact)",
                                  opt.precision.c_str()));
  (void)backend;
  return [&model, bo](int first, int last, bool rank0) {
    return make_cpu_backend(model, bo, first, last, rank0);
  };
}

// The backend every rank uses: --backend, with auto = the GPU when this rank sees one.
std::string resolve_backend(const RunOptions& opt) {
#ifdef GPTOSS_HAVE_GPU
  if (opt.backend == "auto") return gpu_device_present() ? "gpu" : "cpu";
#else
  if (opt.backend == "auto") return "cpu";
#endif
  return opt.backend;
}

}  // namespace

std::pair<int, std::string> plan_rings(const RunOptions& opt) {
  int n = 1, me = 0;
  MPI_Comm_size(comm::world_comm(), &n);
  MPI_Comm_rank(comm::world_comm(), &me);
  if (opt.dp > 0) return {opt.dp, strfmt("--dp %d", opt.dp)};  // make_rings checks it
  if (n == 1) return {1, "one rank"};
  // Every rank: is it a GPU rank, and how much memory is free on its GPU (0 if it cannot say:
  // the backend will fail there with the real error).
  int gpu = 0;
  uint64_t free_b = 0;
  try {
    gpu = resolve_backend(opt) == "gpu";
#ifdef GPTOSS_HAVE_GPU
    if (gpu) free_b = gpu_free_bytes(gpu_for_this_rank());
#endif
  } catch (const Error&) {
    free_b = 0;
  }
  int all_gpu = 0;
  uint64_t least_free = 0;
  MPI_Allreduce(&gpu, &all_gpu, 1, MPI_INT, MPI_MIN, comm::world_comm());
  MPI_Allreduce(&free_b, &least_free, 1, MPI_UINT64_T, MPI_MIN, comm::world_comm());
  // Rank 0 decides from the model's config; every rank takes its answer.
  ShapePlan plan;
  if (me == 0) {
    try {
      ModelFile model(opt.model_path);
      ShapeInput in = shape_input(model.config(), opt);
      in.ranks = n;
      in.gpu = all_gpu != 0;
      in.free_bytes = least_free;
      plan = plan_shape(in);
    } catch (const Error&) {
      plan.dp = 1;
      plan.why = "auto: one ring (the model file could not be read)";
    }
  }
  int dp = plan.dp;
  int len = static_cast<int>(plan.why.size());
  MPI_Bcast(&dp, 1, MPI_INT, 0, comm::world_comm());
  MPI_Bcast(&len, 1, MPI_INT, 0, comm::world_comm());
  plan.why.resize(static_cast<size_t>(len));
  MPI_Bcast(plan.why.data(), len, MPI_CHAR, 0, comm::world_comm());
  return {dp, plan.why};
}

void cap_getp_slots(RunOptions& opt, size_t prompts) {
  if (opt.mode != Mode::Getp || opt.batch_given) return;
  int64_t n = static_cast<int64_t>(prompts);
  int size = 1;
  MPI_Comm_size(comm::world_comm(), &size);
  if (size > 1) MPI_Bcast(&n, 1, MPI_INT64_T, 0, comm::world_comm());
  GPTOSS_ASSERT(n > 0);
  opt.getp_prompts = n;
  opt.max_slots = static_cast<int>(std::min<int64_t>(opt.max_slots, n));
}

SchedulerOptions Session::scheduler_options(const RunOptions& opt, int n) const {
  SchedulerOptions so;
  so.max_slots = n > 0 ? n : slots;
  so.chunk_tokens = chunk_tokens;
  // The GPU takes at most kGpuSeqStepRows rows of one sequence per device step: with steps larger
  // than that, a larger budget goes to several prompts at once rather than into steps cut short.
  // (With 512-row steps the scheduler is as before: one prompt may take a whole --chunk.)
  so.seq_chunk = backend == "gpu" && opt.step_rows > kGpuSeqStepRows ? kGpuSeqStepRows : 0;
  so.ctx = opt.ctx;
  so.stop_ids = opt.stop_ids;
  so.ignore_eos = opt.ignore_eos;
  so.kv_block_tokens = kv_block_tokens;
  so.kv_blocks = kv_blocks;
  return so;
}

void Session::run(Scheduler& sch, const std::function<bool()>& should_stop,
                  const std::function<void()>& after_commit,
                  const std::function<void()>& before_plan) {
  pipeline->run(sch, should_stop, after_commit, before_plan);
}

std::vector<double> Session::finish() {
  if (finished) return busy_pct;
  finished = true;
  std::vector<comm::StageTiming> t = pipeline->finish();
  // One process reads like one program: the ring's report belongs to runs that have a ring.
  if (ranks > 1) std::fputs(comm::format_stage_report(t).c_str(), stderr);
  busy_pct = comm::stage_busy_pct(t);
  return busy_pct;
}

namespace {

// This rank's ring: backend, model check (COLLECTIVE over the world), pipeline (COLLECTIVE over
// the ring). s.model must be loaded. The same order on every rank.
void open_ring(Session& s, const RunOptions& opt) {
  s.ranks = ring_size();
  s.backend = resolve_backend(opt);
  s.chunk_tokens = chunk_tokens_for(opt, s.backend, s.ranks);
  set_threads(opt);
  BackendFactory make_backend = backend_factory(opt, *s.model, s.backend);
  comm::check_same_model_on_all_ranks(opt.model_path, kFormatVersion);  // collective
  s.pipeline = std::make_unique<Pipeline>(ring_comm(), s.model->config(), make_backend,
                                          pipeline_options(opt, s.backend));  // collective
  s.micro_batches = s.pipeline->micro_batches();
  s.slots = s.pipeline->max_slots();
  if (s.pipeline->pages_kv()) {
    s.kv_block_tokens = kv_paging(opt, s.backend).first;
    s.kv_blocks = s.pipeline->kv_blocks();
  }
}

}  // namespace

int run_stage_worker(const RunOptions& opt) {
  // Rank 0 checks the options against the model (and aborts the job if they are wrong).
  Session s;
  s.model = std::make_unique<ModelFile>(opt.model_path);
  open_ring(s, opt);
  s.pipeline->serve();
  s.pipeline->finish();  // collective
  s.finished = true;
  return 0;
}

Session open_leader_session(const RunOptions& opt) {
  Session s;
  const double t0 = now_seconds();
  s.model = std::make_unique<ModelFile>(opt.model_path);
  open_ring(s, opt);
  s.load_s = now_seconds() - t0;
  return s;
}

int run_idle_ring(const RunOptions& opt) {
  comm::check_same_model_on_all_ranks(opt.model_path, kFormatVersion);  // collective
  return 0;
}

Session open_session(const RunOptions& opt, int slots, std::unique_ptr<Tokenizer> tok,
                     double tok_load_s) {
  Session s;
  double t0 = now_seconds() - tok_load_s;
  s.model = std::make_unique<ModelFile>(opt.model_path);
  const Config& c = s.model->config();
  s.tokenizer = tok ? std::move(tok) : load_tokenizer(opt);
  if (s.tokenizer->vocab_size() != c.vocab)  // before the flag checks: the root cause first
    fail("%s: the tokenizer has %d ids but the model %s has a vocabulary of %d",
         opt.tokenizer_path.c_str(), s.tokenizer->vocab_size(), opt.model_path.c_str(), c.vocab);
  check_against_model(opt, c);
  GPTOSS_ASSERT(slots == session_slots(opt));
  open_ring(s, opt);
  const size_t kv_bytes = s.pipeline->kv_cache_bytes();
  const bool auto_slots = auto_slots_for(opt, s.backend);
  slots = s.slots;
  s.load_s = now_seconds() - t0;

  std::fprintf(stderr, "model: %s (%s)\n", s.model->description().c_str(), opt.model_path.c_str());
  std::fprintf(stderr,
               "config: %d layers, hidden %d, %d heads (%d kv) x %d, %d experts (top %d), "
               "vocab %d, window %d, max context %d\n",
               c.n_layers, c.hidden, c.n_heads, c.n_kv_heads, c.head_dim, c.n_experts,
               c.experts_per_tok, c.vocab, c.sliding_window, c.max_context);
  const Rings& r = rings();
  if (r.world_size > 1) {
    std::string what;
    if (r.dp > 1 && opt.mode == Mode::Getp) what = "; prompts go to the rings by load";
    else if (r.dp > 1 && opt.mode == Mode::Serve) what = "; requests go to the rings by load";
    else if (r.dp > 1)
      what = strfmt("; -m %s runs on ring 0, the other ring%s wait%s", mode_name(opt.mode),
                    r.dp > 2 ? "s" : "", r.dp > 2 ? "" : "s");
    std::fprintf(stderr, "shape: %s (%s)%s\n", r.describe().c_str(), r.why.c_str(), what.c_str());
  }
  if (s.ranks > 1) std::fprintf(stderr, "%s%s\n", r.dp > 1 ? "ring 0: " : "",
                                s.pipeline->describe().c_str());
  // Paged: the pool's positions, shared by the slots (sliding layers keep a window per slot).
  const std::string kv_shape =
      s.kv_block_tokens > 0 && (opt.kv_tokens > 0 || s.backend != "cpu")
          ? strfmt("%d slot%s%s sharing %lld positions (%s), at most %d each, paged in blocks of "
                   "%d",
                   slots, slots == 1 ? "" : "s",
                   auto_slots ? strfmt(" (at most %d; -b sets it)", auto_slots_cap(opt, s.ranks)).c_str()
                              : "",
                   static_cast<long long>(s.kv_blocks) * s.kv_block_tokens,
                   opt.kv_tokens > 0 ? "--kv-tokens" : "what GPU memory holds, at most -b x -c",
                   opt.ctx, s.kv_block_tokens)
      : s.kv_block_tokens > 0
          ? strfmt("%d slot%s x %d positions, paged in blocks of %d", slots, slots == 1 ? "" : "s",
                   opt.ctx, s.kv_block_tokens)
          : strfmt("%d slot%s x %d positions%s", slots, slots == 1 ? "" : "s", opt.ctx,
                   auto_slots ? strfmt(": as many as GPU memory holds, at most %d; -b sets it",
                                       auto_slots_cap(opt, s.ranks)).c_str()
                              : "");
  std::fprintf(stderr, "loaded in %.2f s; KV cache %.1f MiB%s (%s); backend %s\n", s.load_s,
               static_cast<double>(kv_bytes) / (1024.0 * 1024.0), s.ranks > 1 ? " on rank 0" : "",
               kv_shape.c_str(), s.backend.c_str());
  return s;
}

}  // namespace gptoss
