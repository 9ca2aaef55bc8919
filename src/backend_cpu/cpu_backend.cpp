// cpu_backend.cpp: the CPU backend (backend.h) over CpuModel: host payloads, computed on the
// calling thread with OpenMP.
#include <omp.h>

#include <cstring>

#include "backend/backend.h"
#include "backend/engine.h"
#include "backend_cpu/cpu_model.h"
#include "common/error.h"
#include "model/model_file.h"

namespace gptoss {

namespace {

class CpuBackend final : public Backend {
 public:
  CpuBackend(const ModelWeights& w, const BackendOptions& opt, int first, int last, bool ends)
      : model_(w, opt.ctx, opt.max_slots, first, last, opt.kv_block_tokens, opt.kv_blocks),
        first_(first),
        last_(last),
        ends_(ends) {}
  const Config& config() const override { return model_.config(); }
  int first_layer() const override { return first_; }
  int last_layer() const override { return last_; }
  bool has_ends() const override { return ends_; }
  int ctx() const override { return model_.ctx(); }
  int max_slots() const override { return model_.max_slots(); }
  size_t kv_cache_bytes() const override { return model_.kv_cache_bytes(); }
  bool pages_kv() const override { return model_.paged(); }
  int kv_pool_blocks() const override { return model_.paged() ? model_.blocks() : 0; }

  void run(std::span<const int32_t> tokens, std::span<const RowPos> rows, const float* in,
           float* out) override {
    const size_t H = static_cast<size_t>(config().hidden);
    if (!out) {
      own_.resize(rows.size() * H);
      out = own_.data();
    }
    if (!tokens.empty()) {
      GPTOSS_ASSERT(ends_ && tokens.size() == rows.size());
      model_.embed(tokens, out);
    } else if (in != out) {
      std::memcpy(out, in, rows.size() * H * sizeof(float));
    }
    model_.run_layers(first_, last_, rows, out);
  }

  void head(const float* x, std::span<const int32_t> logit_rows, float* logits) override {
    GPTOSS_ASSERT(ends_);
    if (!x) x = own_.data();
    const size_t H = static_cast<size_t>(config().hidden);
    xl_.resize(logit_rows.size() * H);
    for (size_t i = 0; i < logit_rows.size(); ++i)
      std::memcpy(xl_.data() + i * H, x + static_cast<size_t>(logit_rows[i]) * H, H * sizeof(float));
    model_.head(xl_.data(), static_cast<int>(logit_rows.size()), logits);
  }

  bool can_head_slice() const override { return true; }

  void head_slice_first(const float* x, std::span<const int32_t> x_rows, std::span<const int32_t> k,
                        int vocab_begin, int vocab_end, void* out) override {
    GPTOSS_ASSERT(k.size() == x_rows.size());
    if (!x) x = own_.data();
    const size_t n = x_rows.size(), H = static_cast<size_t>(config().hidden);
    HeadRow* rows = head_rows(out);
    float* xo = head_x(out, n);
    for (size_t i = 0; i < n; ++i) {
      rows[i] = head_row_init(k[i]);
      std::memcpy(xo + i * H, x + static_cast<size_t>(x_rows[i]) * H, H * sizeof(float));
    }
    merge_slice(rows, xo, static_cast<int>(n), vocab_begin, vocab_end);
  }

  void head_slice_next(const void* in, void* out, int n, int vocab_begin, int vocab_end) override {
    const size_t H = static_cast<size_t>(config().hidden);
    if (in != out) std::memcpy(out, in, head_payload_bytes(static_cast<size_t>(n), H));
    merge_slice(head_rows(out), head_x(out, n), n, vocab_begin, vocab_end);
  }

  void head_rows_read(const void* payload, int n, HeadRow* rows) override {
    std::memcpy(rows, payload, static_cast<size_t>(n) * sizeof(HeadRow));
  }

 private:
  // Logits of ids [v0, v1) for the n rows of x, merged into rows (one row per thread).
  void merge_slice(HeadRow* rows, const float* x, int n, int v0, int v1) {
    if (v0 == v1 || n == 0) return;
    const size_t w = static_cast<size_t>(v1 - v0);
    slice_.resize(static_cast<size_t>(n) * w);
    model_.head_slice(x, n, v0, v1, slice_.data());
#pragma omp parallel
    {
      std::vector<int32_t> scratch;
#pragma omp for schedule(dynamic)
      for (int i = 0; i < n; ++i) head_row_merge(rows[i], slice_.data() + i * w, v0, int(w), scratch);
    }
  }

  CpuModel model_;
  int first_, last_;
  bool ends_;
  std::vector<float> own_;  // [rows, H]: run() results kept here when out == nullptr
  std::vector<float> xl_;   // [logit rows, H]: the logit rows, gathered
  std::vector<float> slice_;  // [rows, slice]: head_slice logits
};

}  // namespace

std::unique_ptr<Backend> make_cpu_backend(const ModelWeights& w, const BackendOptions& opt,
                                          int first, int last, bool ends) {
  if (!opt.kv_cache.empty() && opt.kv_cache != "f32")
    fail("--kv-cache %s: the CPU backend keeps its KV cache in f32 only", opt.kv_cache.c_str());
  if (!opt.precision.empty() && opt.precision != "exact")
    fail("--precision %s: the CPU backend computes in fp32 only (exact)", opt.precision.c_str());
  if (opt.threads < 0) fail("threads %d: must be >= 0 (0 = OpenMP default)", opt.threads);
  if (opt.threads > 0) omp_set_num_threads(opt.threads);
  return std::make_unique<CpuBackend>(w, opt, first, last, ends);
}

std::unique_ptr<Backend> make_cpu_backend(const ModelFile& model, const BackendOptions& opt,
                                          int first, int last, bool ends) {
  return make_cpu_backend(model_weights(model), opt, first, last, ends);
}

std::unique_ptr<Engine> make_cpu_engine(const ModelWeights& w, const BackendOptions& opt) {
  return std::make_unique<Engine>(make_cpu_backend(w, opt, 0, w.config.n_layers, true));
}

std::unique_ptr<Engine> make_cpu_engine(const ModelFile& model, const BackendOptions& opt) {
  return std::make_unique<Engine>(make_cpu_backend(model, opt, 0, model.config().n_layers, true));
}

}  // namespace gptoss
