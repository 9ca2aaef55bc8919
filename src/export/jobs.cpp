// jobs.cpp: OpenMP job runner with terminal-only progress.
#include "export/jobs.h"

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <exception>
#include <mutex>

#include "common/error.h"

namespace gptoss {

double now_seconds() {
  using namespace std::chrono;
  return duration<double>(steady_clock::now().time_since_epoch()).count();
}

uint64_t run_jobs(std::vector<Job>& jobs, const std::string& label) {
  uint64_t total = 0;
  for (const Job& j : jobs) total += j.bytes;
  const bool tty = ::isatty(2);
  const double t0 = now_seconds();
  std::atomic<uint64_t> done{0};
  std::atomic<bool> failed{false};
  std::exception_ptr error;
  std::mutex mu;
  double last_print = t0;
  const long n = static_cast<long>(jobs.size());
#pragma omp parallel for schedule(dynamic, 1)
  for (long i = 0; i < n; i++) {
    if (failed) continue;
    try {
      jobs[static_cast<size_t>(i)].run();
    } catch (...) {
      std::lock_guard<std::mutex> g(mu);
      if (!failed.exchange(true)) error = std::current_exception();
      continue;
    }
    const uint64_t d = done += jobs[static_cast<size_t>(i)].bytes;
    if (tty) {
      std::unique_lock<std::mutex> g(mu, std::try_to_lock);
      const double t = now_seconds();
      if (g.owns_lock() && t - last_print > 0.25) {
        last_print = t;
        std::fprintf(stderr, "\r%s: %.2f / %.2f GB, %.0f MB/s   ", label.c_str(), d / 1e9,
                     total / 1e9, d / 1e6 / (t - t0 + 1e-9));
        std::fflush(stderr);
      }
    }
  }
  if (tty) std::fprintf(stderr, "\r%60s\r", "");
  if (error) std::rethrow_exception(error);
  return total;
}

}  // namespace gptoss
