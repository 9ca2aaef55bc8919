// bridge.cpp: the inbox and the per-request token streams (see bridge.h).
#include "serve/bridge.h"

namespace gptoss::serve {

void TokenStream::push(int32_t token) {
  {
    std::lock_guard<std::mutex> lk(m_);
    tokens_.push_back(token);
  }
  cv_.notify_one();
}

void TokenStream::finish(EndKind why) {
  {
    std::lock_guard<std::mutex> lk(m_);
    if (!end_) end_ = why;
  }
  cv_.notify_one();
}

std::optional<EndKind> TokenStream::take(std::vector<int32_t>& out,
                                         std::chrono::milliseconds wait) {
  std::unique_lock<std::mutex> lk(m_);
  cv_.wait_for(lk, wait, [&] { return !tokens_.empty() || end_.has_value(); });
  out.insert(out.end(), tokens_.begin(), tokens_.end());
  tokens_.clear();
  return end_;
}

bool Inbox::submit(Job j) {
  {
    std::lock_guard<std::mutex> lk(m_);
    if (closed_) return false;
    jobs_.push_back(std::move(j));
  }
  cv_.notify_one();
  return true;
}

void Inbox::cancel(uint64_t id) {
  {
    std::lock_guard<std::mutex> lk(m_);
    cancels_.push_back(id);
  }
  cv_.notify_one();
}

void Inbox::close() {
  std::lock_guard<std::mutex> lk(m_);
  closed_ = true;
}

bool Inbox::closed() {
  std::lock_guard<std::mutex> lk(m_);
  return closed_;
}

void Inbox::wait(std::chrono::milliseconds wait) {
  std::unique_lock<std::mutex> lk(m_);
  cv_.wait_for(lk, wait, [&] { return !jobs_.empty() || !cancels_.empty() || woken_; });
  woken_ = false;
}

void Inbox::wake() {
  {
    std::lock_guard<std::mutex> lk(m_);
    woken_ = true;
  }
  cv_.notify_one();
}

void Inbox::take(std::vector<Job>& jobs, std::vector<uint64_t>& cancels) {
  std::lock_guard<std::mutex> lk(m_);
  for (Job& j : jobs_) jobs.push_back(std::move(j));
  jobs_.clear();
  cancels.insert(cancels.end(), cancels_.begin(), cancels_.end());
  cancels_.clear();
}

size_t Inbox::pending() {
  std::lock_guard<std::mutex> lk(m_);
  return jobs_.size();
}

}  // namespace gptoss::serve
