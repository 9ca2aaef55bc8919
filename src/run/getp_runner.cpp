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

void SchedulerRunner::run(std::vector<Request>& todo,
                          const std::function<void(Finished&&)>& on_finish,
                          const std::function<bool()>& stop, const std::function<void()>& progress) {
  sch_.on_finish = on_finish;
  for (Request& r : todo) sch_.submit(std::move(r));
  todo.clear();
  drive_(sch_, stop, progress);
}

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
  SchedulerRunner runner(drive, job.sched, chooser);
  return run_getp_job(runner, prompts, job, should_stop);
}

GetpResult run_getp_job(RequestRunner& runner, const std::vector<std::vector<int32_t>>& prompts,
                        const GetpJob& job, const std::function<bool()>& should_stop) {
  const size_t n = prompts.size();
  const std::string& partial_path = job.partial_path;
  GetpResult res;
  res.n = n;
  std::vector<std::optional<std::vector<int32_t>>> results(n);
  std::optional<PartialWriter> writer;
  if (!partial_path.empty()) {
    // Locked before it is read: no other run appends while this one decides where to go on.
    const bool existing = job.resume && file_exists(partial_path);
    writer.emplace(partial_path, job.header, existing, job.sync_interval_s, job.lock_wait_s);
    if (existing) {
      PartialState st = load_partial(partial_path, job.header, n);
      results = std::move(st.done);
      res.done = res.done_before = st.count;
      writer->truncate_to(st.valid_bytes);
    }
  }

  auto on_finish = [&](Finished&& f) {
    GPTOSS_ASSERT(f.id < n && !results[f.id]);
    if (writer) writer->add(f.id, f.generated);
    res.generated += f.generated.size();
    results[f.id] = std::move(f.generated);
    ++res.done;
  };
  std::vector<Request> todo;
  for (size_t i = 0; i < n; ++i)
    if (!results[i]) todo.push_back(Request{i, prompts[i], job.max_new, 0, -1});

  const double t0 = now_s();
  double last_print = t0;
  auto progress = [&] {
    const double t = now_s();
    const double every = job.progress_tty ? 0.5 : job.progress_lines_s;
    if (!(every > 0) || t - last_print < every) return;
    last_print = t;
    const double el = t - t0;
    const size_t this_run = res.done - res.done_before;
    const std::string eta = this_run ? hms(el / this_run * (n - res.done)) : "?";
    const std::string line =
        strfmt("getp: %zu/%zu prompts done, %.1f tok/s, %s elapsed, ETA %s", res.done, n,
               runner.generated() / std::max(el, 1e-9), hms(el).c_str(), eta.c_str());
    if (job.progress_tty) std::fprintf(stderr, "\r%s   ", line.c_str());
    else std::fprintf(stderr, "%s\n", line.c_str());
  };
  bool stopped = false;
  auto stop = [&] {
    if (!stopped && should_stop && should_stop()) stopped = true;
    return stopped;
  };
  runner.run(todo, on_finish, stop, progress);
  res.interrupted = stopped && res.done < n;
  res.wall_s = now_s() - t0;
  res.prompt_rows = runner.prompt_rows();
  if (job.progress_tty) std::fputs("\r\033[K", stderr);
  if (writer) writer->close();  // fsynced; the lock is released
  if (res.interrupted) return res;

  res.outputs.resize(n);
  for (size_t i = 0; i < n; ++i) {
    GPTOSS_ASSERT(results[i].has_value());
    res.outputs[i] = std::move(*results[i]);
  }
  write_output(job.out, format_output(res.outputs));
  if (!partial_path.empty() && ::unlink(partial_path.c_str()) < 0 && errno != ENOENT)
    std::fprintf(stderr, "getp: warning: could not remove %s: %s\n", partial_path.c_str(),
                 std::strerror(errno));
  return res;
}

}  // namespace gptoss
