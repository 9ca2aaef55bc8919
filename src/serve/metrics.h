// metrics.h: the server's counters and gauges, written by the HTTP threads (requests by endpoint
// and status) and the engine thread (tokens, queue depth, running sequences, KV blocks), read by
// GET /metrics as Prometheus text (format 0.0.4). Every name starts with gptoss_.
#pragma once
#include <array>
#include <atomic>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>

namespace gptoss::serve {

class Metrics {
 public:
  void request_done(const std::string& endpoint, int status);
  void add_prompt_tokens(uint64_t n) { prompt_tokens_ += n; }
  void add_generated_tokens(uint64_t n, double now_s);
  void set_queue(int waiting, int running) {
    waiting_ = waiting;
    running_ = running;
  }
  // Paged KV cache of rank 0's scheduler (total 0: not paged, the gauges are left out): blocks in
  // the pool, blocks holding positions (running or idle slots) and blocks promised to running
  // sequences but not yet taken.
  void set_kv(int total, int used, int reserved) {
    kv_total_ = total;
    kv_used_ = used;
    kv_reserved_ = reserved;
  }
  // Generated tokens per second over the last 10 whole seconds.
  double tokens_per_second(double now_s);
  std::string prometheus_text(double now_s);

 private:
  std::mutex m_;
  std::map<std::pair<std::string, int>, uint64_t> requests_;  // (endpoint, status) -> count
  std::atomic<uint64_t> prompt_tokens_{0}, generated_tokens_{0};
  std::atomic<int> waiting_{0}, running_{0};
  std::atomic<int> kv_total_{0}, kv_used_{0}, kv_reserved_{0};
  static constexpr int kBuckets = 16;
  std::array<int64_t, kBuckets> bucket_second_{};  // second of each bucket (whole seconds)
  std::array<uint64_t, kBuckets> bucket_tokens_{};
};

}  // namespace gptoss::serve
