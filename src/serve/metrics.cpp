// metrics.cpp: counters and the Prometheus text (see metrics.h).
#include "serve/metrics.h"

#include <cmath>
#include <cstdio>

namespace gptoss::serve {

void Metrics::request_done(const std::string& endpoint, int status) {
  std::lock_guard<std::mutex> lk(m_);
  ++requests_[{endpoint, status}];
}

void Metrics::add_generated_tokens(uint64_t n, double now_s) {
  generated_tokens_ += n;
  const int64_t sec = static_cast<int64_t>(std::floor(now_s));
  std::lock_guard<std::mutex> lk(m_);
  const int b = static_cast<int>(sec % kBuckets);
  if (bucket_second_[b] != sec) {
    bucket_second_[b] = sec;
    bucket_tokens_[b] = 0;
  }
  bucket_tokens_[b] += n;
}

double Metrics::tokens_per_second(double now_s) {
  const int64_t sec = static_cast<int64_t>(std::floor(now_s));
  std::lock_guard<std::mutex> lk(m_);
  uint64_t sum = 0;
  for (int k = 1; k <= 10; ++k) {  // the 10 whole seconds before this one
    const int64_t s = sec - k;
    const int b = static_cast<int>(((s % kBuckets) + kBuckets) % kBuckets);
    if (bucket_second_[b] == s) sum += bucket_tokens_[b];
  }
  return static_cast<double>(sum) / 10.0;
}

std::string Metrics::prometheus_text(double now_s) {
  std::string out;
  char line[512];
  out +=
      "# HELP gptoss_requests_total HTTP requests answered, by endpoint and status code.\n"
      "# TYPE gptoss_requests_total counter\n";
  {
    std::lock_guard<std::mutex> lk(m_);
    for (const auto& [key, n] : requests_) {
      std::snprintf(line, sizeof line,
                    "gptoss_requests_total{endpoint=\"%s\",status=\"%d\"} %llu\n",
                    key.first.c_str(), key.second, static_cast<unsigned long long>(n));
      out += line;
    }
  }
  auto metric = [&](const char* name, const char* type, const char* help, double v) {
    std::snprintf(line, sizeof line, "# HELP %s %s\n# TYPE %s %s\n%s %.10g\n", name, help, name,
                  type, name, v);
    out += line;
  };
  metric("gptoss_prompt_tokens_total", "counter", "Prompt tokens of admitted requests.",
         static_cast<double>(prompt_tokens_.load()));
  metric("gptoss_generation_tokens_total", "counter", "Tokens generated.",
         static_cast<double>(generated_tokens_.load()));
  metric("gptoss_queue_depth", "gauge", "Requests waiting for a sequence slot.", waiting_.load());
  metric("gptoss_running_sequences", "gauge", "Sequences being generated.", running_.load());
  metric("gptoss_generation_tokens_per_second", "gauge",
         "Tokens generated per second over the last 10 s.", tokens_per_second(now_s));
  if (const int total = kv_total_.load(); total > 0) {
    const int used = kv_used_.load(), reserved = kv_reserved_.load();
    metric("gptoss_kv_blocks_total", "gauge", "Blocks in the paged KV cache's pool.", total);
    metric("gptoss_kv_blocks_used", "gauge",
           "KV blocks holding positions of running or idle sequences (idle ones are reclaimed on "
           "demand).", used);
    metric("gptoss_kv_blocks_reserved", "gauge",
           "KV blocks promised to running sequences, not yet written.", reserved);
    metric("gptoss_kv_cache_usage_ratio", "gauge", "(used + reserved) / total KV blocks.",
           static_cast<double>(used + reserved) / total);
  }
  return out;
}

}  // namespace gptoss::serve
