// getp_runner.cpp: continuous-batching getp job with crash-safe output (see getp_runner.h).
#include "run/getp_runner.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <optional>

#include "common/error.h"
#include "run/getp_io.h"

namespace gptoss {

namespace {
double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}
std::string hms(double s) {
  long t = static_cast<long>(s + 0.5);
  if (t >= 3600) return strfmt("%ldh%02ldm", t / 3600, (t / 60) % 60);
  if (t >= 60) return strfmt("%ldm%02lds", t / 60, t % 60);
  return strfmt("%lds", t);
}
}  // namespace

GetpResult run_getp_job(Engine& engine, const ChooserFactory& chooser,
                        const std::vector<std::vector<int32_t>>& prompts, const GetpJob& job,
                        const std::function<bool()>& should_stop) {
  StepDriver drive = [&engine](Scheduler& sch, const std::function<bool()>& stop,
                               const std::function<void()>& after) {
    while (sch.busy()) {
      if (stop && stop()) return;
      sch.run_step(engine);
      if (after) after();
    }
  };
  return run_getp_job(drive, chooser, prompts, job, should_stop);
}

GetpResult run_getp_job(const StepDriver& drive, const ChooserFactory& chooser,
                        const std::vector<std::vector<int32_t>>& prompts, const GetpJob& job,
                        const std::function<bool()>& should_stop) {
  const size_t n = prompts.size();
  const std::string partial_path = job.out_path + ".partial";
  GetpResult res;
  res.n = n;
  std::vector<std::optional<std::vector<int32_t>>> results(n);
  uint64_t keep_bytes = 0;
  bool append = false;
  if (job.resume && file_exists(partial_path)) {
    PartialState st = load_partial(partial_path, job.header, n);
    results = std::move(st.done);
    res.done = res.done_before = st.count;
    keep_bytes = st.valid_bytes;
    append = true;
  }
  PartialWriter writer(partial_path, job.header, append, keep_bytes, job.sync_interval_s);

  Scheduler sch(job.sched, chooser);
  sch.on_finish = [&](Finished&& f) {
    writer.add(f.id, f.generated);
    res.generated += f.generated.size();
    results[f.id] = std::move(f.generated);
    ++res.done;
  };
  for (size_t i = 0; i < n; ++i)
    if (!results[i]) sch.submit(Request{i, prompts[i], job.max_new, 0, -1});

  const double t0 = now_s();
  double last_print = t0;
  auto progress = [&] {
    double t = now_s();
    if (job.progress && t - last_print >= 0.5) {
      last_print = t;
      double el = t - t0;
      size_t this_run = res.done - res.done_before;
      std::string eta = this_run ? hms(el / this_run * (n - res.done)) : "?";
      std::fprintf(stderr, "\rgetp: %zu/%zu prompts, %.1f tok/s, ETA %s   ", res.done, n,
                   sch.stats().generated / std::max(el, 1e-9), eta.c_str());
    }
  };
  bool stopped = false;
  auto stop = [&] {
    if (!stopped && should_stop && should_stop()) stopped = true;
    return stopped;
  };
  drive(sch, stop, progress);
  res.interrupted = stopped && sch.busy();
  res.wall_s = now_s() - t0;
  res.prompt_rows = sch.stats().prompt_rows;
  if (job.progress) std::fputs("\r\033[K", stderr);
  writer.close();
  if (res.interrupted) return res;

  std::vector<std::vector<int32_t>> outputs(n);
  for (size_t i = 0; i < n; ++i) {
    GPTOSS_ASSERT(results[i].has_value());
    outputs[i] = std::move(*results[i]);
  }
  write_file_atomic(job.out_path, format_output(outputs));
  if (::unlink(partial_path.c_str()) < 0 && errno != ENOENT)
    std::fprintf(stderr, "getp: warning: could not remove %s: %s\n", partial_path.c_str(),
                 std::strerror(errno));
  return res;
}

}  // namespace gptoss
