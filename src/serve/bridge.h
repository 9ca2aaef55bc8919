// bridge.h: how the HTTP threads and the engine thread talk. MPI and the engine are used from the
// main thread only; HTTP handlers run on the HTTP library's worker threads. A handler puts a Job
// (prompt ids, limits, sampling) into the Inbox and waits on the job's TokenStream; the engine
// thread takes jobs and cancellations from the Inbox between micro-batches (Scheduler before_plan)
// and pushes every generated token and the end into the job's stream. Both sides only hold a
// mutex for a queue operation: decoding, harmony parsing and JSON happen on the handler's thread.
#pragma once
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <vector>

#include "serve/reply.h"

namespace gptoss::serve {

// One request's output, engine -> handler.
class TokenStream {
 public:
  void push(int32_t token);
  void finish(EndKind why);
  // Handler: waits up to `wait` for news, moves the new tokens into `out` (appending); returns
  // the end once it has come and every token before it has been taken.
  std::optional<EndKind> take(std::vector<int32_t>& out, std::chrono::milliseconds wait);

 private:
  std::mutex m_;
  std::condition_variable cv_;
  std::vector<int32_t> tokens_;
  std::optional<EndKind> end_;
};

struct Job {
  uint64_t id = 0;
  std::vector<int32_t> prompt;
  int max_tokens = 1;
  float temperature = 1.0f, top_p = 1.0f;
  int top_k = 0;
  std::optional<uint64_t> seed;  // none: the engine derives one from the server seed and the id
  std::shared_ptr<TokenStream> out;
};

class Inbox {
 public:
  // Handler side. submit() is false once the inbox is closed (the server is shutting down).
  bool submit(Job j);
  void cancel(uint64_t id);
  // Engine side.
  void close();
  bool closed();
  // Waits until a job or a cancellation arrives, wake() is called, or `wait` passes.
  void wait(std::chrono::milliseconds wait);
  void wake();
  void take(std::vector<Job>& jobs, std::vector<uint64_t>& cancels);
  size_t pending();

 private:
  std::mutex m_;
  std::condition_variable cv_;
  std::vector<Job> jobs_;
  std::vector<uint64_t> cancels_;
  bool closed_ = false, woken_ = false;
};

}  // namespace gptoss::serve
