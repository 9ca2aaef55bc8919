// jobs.h: runs a list of independent byte-producing jobs on all cores (OpenMP) with a progress
// line (bytes done, MB/s) on stderr when stderr is a terminal. The first Error thrown by a job is
// rethrown after the others stop.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace gptoss {

struct Job {
  uint64_t bytes = 0;           // output bytes it produces (for progress)
  std::function<void()> run;
};

// Returns the total bytes of the jobs.
uint64_t run_jobs(std::vector<Job>& jobs, const std::string& label);

// Splits [0, n) into chunks of at most `chunk` and calls add(begin, count) for each.
template <class F>
void for_chunks(uint64_t n, uint64_t chunk, F&& add) {
  for (uint64_t b = 0; b < n; b += chunk) add(b, n - b < chunk ? n - b : chunk);
}

double now_seconds();

}  // namespace gptoss
