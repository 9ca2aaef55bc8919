// main.cpp: `run [MODEL] -m generate|chat|getp|bench|serve ...` (see src/run/README.md), one MPI program:
// rank 0 runs the mode (tokenizer, scheduler, I/O, embedding, LM head, sampling); ranks > 0
// serve their block of layers in the ring pipeline (docs/pipeline.md). Without a launcher it is
// a world of one, the same code path.
#include <errno.h>
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

// The program `name` in $PATH ("" if none).
std::string find_in_path(const char* name) {
  const char* path = std::getenv("PATH");
  std::string dirs = path ? path : "/usr/bin:/bin";
  size_t start = 0;
  while (start <= dirs.size()) {
    size_t end = dirs.find(':', start);
    if (end == std::string::npos) end = dirs.size();
    std::string f = end > start ? dirs.substr(start, end - start) : std::string(".");
    f.append("/").append(name);
    if (::access(f.c_str(), X_OK) == 0) return f;
    start = end + 1;
  }
  return "";
}

// One process that sees several GPUs (e.g. `srun --gres=gpu:8 ./run ...`, one task, or `./run`
// on a workstation with several GPUs) runs one rank per GPU. Without a launcher it becomes
// `mpirun -np N` of the same command (exec: the same process id, so signals reach mpirun, which
// passes them on); a Slurm task (srun, or a batch script running it directly) cannot be asked
// for more ranks, so it stops with the command that would use them. Returns only on an error
// (exit 1).
int use_every_gpu(int gpus, const std::string& argv0, const std::vector<std::string>& args) {
  const bool slurm = std::getenv("SLURM_JOB_ID") != nullptr;
  std::string cmd = slurm ? gptoss::strfmt("srun -n %d --mpi=pmix", gpus)
                          : gptoss::strfmt("mpirun -np %d", gpus);
  cmd.append(" ").append(shell_quote(argv0));
  for (const std::string& a : args) cmd.append(" ").append(shell_quote(a));
  if (launcher_rank() >= 0) {
    std::fprintf(stderr,
                 "run: error: this process sees %d GPUs but Slurm started it as one task: to use "
                 "all %d run `%s`; --no-spawn uses one\n",
                 gpus, gpus, cmd.c_str());
    return 1;
  }
  const std::string mpirun = find_in_path("mpirun");
  if (mpirun.empty()) {
    std::fprintf(stderr,
                 "run: error: this process sees %d GPUs and starts one rank per GPU with mpirun, "
                 "which is not in PATH: install Open MPI's mpirun and run `%s`; --no-spawn uses "
                 "one\n",
                 gpus, cmd.c_str());
    return 1;
  }
  std::vector<std::string> av{mpirun, "-np", std::to_string(gpus), "--oversubscribe",
                              "--bind-to", "none"};
  if (::geteuid() == 0) av.push_back("--allow-run-as-root");  // root asked for this run
  av.push_back(self_exe(argv0.c_str()));
  av.insert(av.end(), args.begin(), args.end());
  std::vector<char*> cav;
  for (std::string& a : av) cav.push_back(a.data());
  cav.push_back(nullptr);
  std::fprintf(stderr, "run: this process sees %d GPUs: running it as %d ranks, one per GPU "
               "(mpirun -np %d; --no-spawn uses one)\n", gpus, gpus, gpus);
  std::fflush(stderr);
  ::execv(mpirun.c_str(), cav.data());
  std::fprintf(stderr, "run: error: cannot start %s: %s: to use one GPU, --no-spawn\n",
               mpirun.c_str(), std::strerror(errno));
  return 1;
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
    gptoss::RunOptions o = opt;
    gptoss::cap_getp_slots(o, 0);  // getp: rank 0's prompt count (collective)
    if (r.ring > 0 && r.leader()) return gptoss::run_ring_leader(o);
    return gptoss::run_stage_worker(o);
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
  // One process that sees several GPUs: one rank per GPU (use_every_gpu, docs/pipeline.md). Not
  // when the GPU was chosen (GPTOSS_DEVICE: launch/bind.sh) or mpirun was asked for one rank.
  const bool mpirun_one = std::getenv("OMPI_COMM_WORLD_SIZE") != nullptr;
  if (cli_error.empty() && !opt.no_spawn && one_process() && !mpirun_one &&
      !std::getenv("GPTOSS_DEVICE")) {
    if (const int gpus = visible_gpus(opt); gpus > 1)
      return use_every_gpu(gpus, argv[0], std::vector<std::string>(argv + 1, argv + argc));
  }
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
