// main.cpp: `run [MODEL] -m generate|chat|getp|bench|serve ...` (see src/run/README.md), one MPI program:
// rank 0 runs the mode (tokenizer, scheduler, I/O, embedding, LM head, sampling); ranks > 0
// serve their block of layers in the ring pipeline (docs/pipeline.md). Without a launcher it is
// a world of one, the same code path.
#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>
#include <string>
#include <vector>

#include "comm/world.h"
#include "common/error.h"
#include "run/modes.h"
#include "run/options.h"
#include "run/rings.h"
#include "run/rings_jobs.h"
#include "run/session.h"
#ifdef GPTOSS_HAVE_GPU
#include "backend_gpu/gpu_backend.h"
#endif

namespace {

// This process's rank from the launcher's environment, before MPI is up (-1: no launcher).
int launcher_rank() {
  for (const char* v : {"OMPI_COMM_WORLD_RANK", "PMIX_RANK", "SLURM_PROCID", "PMI_RANK"})
    if (const char* s = std::getenv(v)) return std::atoi(s);
  return -1;
}

// One process (no launcher, or a launcher that started one task).
bool one_process() {
  for (const char* v : {"OMPI_COMM_WORLD_SIZE", "SLURM_NTASKS", "PMI_SIZE", "PMIX_SIZE"})
    if (const char* s = std::getenv(v); s && std::strcmp(s, "1") != 0) return false;
  return true;
}

// GPUs this process sees. GPTOSS_VISIBLE_GPUS_STANDIN=N (tests): N, in any build.
int visible_gpus(const gptoss::RunOptions& opt) {
  if (const char* s = std::getenv("GPTOSS_VISIBLE_GPUS_STANDIN")) return std::atoi(s);
#ifdef GPTOSS_HAVE_GPU
  if (opt.backend != "cpu" && gptoss::gpu_device_present()) return gptoss::gpu_device_count();
#else
  (void)opt;
#endif
  return 0;
}

std::string self_exe(const char* argv0) {
  char buf[4096];
  const ssize_t n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
  return n > 0 ? std::string(buf, static_cast<size_t>(n)) : std::string(argv0);
}

std::string shell_quote(const std::string& s) {
  if (!s.empty() && s.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                        "0123456789_-./=:,+@%") == std::string::npos)
    return s;
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

// Ranks > 0 leave SIGINT/SIGTERM to rank 0, which ends the ring cleanly; a second one kills.
void on_signal_ignored(int) {}
void ignore_first_signal() {
  struct sigaction sa;
  std::memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal_ignored;
  sa.sa_flags = SA_RESETHAND;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
}

int run_mode(const gptoss::RunOptions& opt, gptoss::comm::World& world) {
  if (world.rank() != 0) {
    ignore_first_signal();
    const gptoss::Rings& r = gptoss::rings();
    const bool every_ring = opt.mode == gptoss::Mode::Getp || opt.mode == gptoss::Mode::Serve;
    if (r.ring > 0 && !every_ring) return gptoss::run_idle_ring(opt);
    if (r.ring > 0 && r.leader()) return gptoss::run_ring_leader(opt);
    return gptoss::run_stage_worker(opt);
  }
  switch (opt.mode) {
    case gptoss::Mode::Generate: return gptoss::run_generate(opt);
    case gptoss::Mode::Chat: return gptoss::run_chat(opt);
    case gptoss::Mode::Getp: return gptoss::run_getp(opt);
    case gptoss::Mode::Bench: return gptoss::run_bench(opt);
    case gptoss::Mode::Serve: return gptoss::run_serve(opt);
  }
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  // The command line is checked before MPI starts; every rank parses the same one, so every rank
  // fails the same way. Without a launcher the error is printed and we are done. Under mpirun or
  // srun a rank that exits at once can make the launcher kill rank 0 before it has printed (seen
  // under ASan, where start-up is slow), so the ranks meet first: rank 0 prints, then all exit 1.
  gptoss::RunOptions opt;
  std::string cli_error;
  try {
    int rc = gptoss::parse_cli(argc, argv, opt);
    if (rc >= 0) return rc;
  } catch (const std::exception& e) {
    cli_error = e.what();
    if (launcher_rank() < 0) {
      std::fprintf(stderr, "run: error: %s\n", e.what());
      return 1;
    }
  }
  // One process that sees several GPUs (e.g. `srun --gres=gpu:8 ./run ...`, one task): it starts
  // one copy of itself per further GPU and runs as that many ranks (docs/pipeline.md).
  const std::vector<std::string> args(argv + 1, argv + argc);
  const int gpus = cli_error.empty() && !opt.no_spawn && one_process() ? visible_gpus(opt) : 0;
  if (gpus > 1) gptoss::comm::World::allow_spawn();
  const std::string argv0 = argv[0];
  // One rank: errors are plain "run: error: ..." lines and exit 1. Several: the failing rank
  // prints "run: error: rank R/N (host): ..." and the whole job is aborted (comm/world.h).
  return gptoss::comm::mpi_guarded_main("run", &argc, &argv, [&](gptoss::comm::World& world) -> int {
    if (!cli_error.empty()) {
      if (world.rank() == 0) {
        std::fprintf(stderr, "run: error: %s\n", cli_error.c_str());
        std::fflush(stderr);
      }
      MPI_Barrier(world.comm());
      return 1;
    }
    if (gpus > 1 && world.size() == 1 && !world.spawned()) {
      std::string why;
      if (!world.grow(gpus, self_exe(argv0.c_str()), args, &why)) {
        std::string cmd = std::getenv("SLURM_JOB_ID")
                              ? gptoss::strfmt("srun -n %d --mpi=pmix", gpus)
                              : gptoss::strfmt("mpirun -np %d", gpus);
        cmd += " " + shell_quote(argv0);
        for (const std::string& a : args) cmd += " " + shell_quote(a);
        std::fprintf(stderr,
                     "run: error: this process sees %d GPUs but runs as one rank, and starting "
                     "%d more failed (%s): to use all %d run `%s`; --no-spawn uses one\n",
                     gpus, gpus - 1, why.c_str(), gpus, cmd.c_str());
        return 1;
      }
      std::fprintf(stderr, "run: this process sees %d GPUs: started %d more rank%s, one per GPU\n",
                   gpus, gpus - 1, gpus == 2 ? "" : "s");
    }
    {  // collective; every rank fails alike if --dp does not fit
      auto [dp, why] = gptoss::plan_rings(opt);
      gptoss::make_rings(dp, why);
    }
    if (world.size() > 1) {
      // With several rings every rank meets at the end (an idle ring waits there for ring 0).
      int rc = 1;
      try {
        rc = run_mode(opt, world);
      } catch (const gptoss::comm::WorldError&) {
        gptoss::wait_for_end();
        throw;
      }
      gptoss::wait_for_end();
      return rc;
    }
    try {
      return run_mode(opt, world);
    } catch (const gptoss::comm::WorldError&) {
      throw;
    } catch (const std::bad_alloc&) {
      std::fprintf(stderr, "run: error: out of host memory\n");
    } catch (const std::exception& e) {
      std::fprintf(stderr, "run: error: %s\n", e.what());
    }
    return 1;
  });
}
