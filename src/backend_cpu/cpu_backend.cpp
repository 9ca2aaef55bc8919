// cpu_stage.cpp: the CPU backend's pipeline stage (stage.h) over CpuModel.
#include <cstring>

#include "backend_cpu/cpu_model.h"
#include "backend/backend.h"

namespace gptoss {

namespace {

class CpuStage final : public Stage {
 public:
  CpuStage(const ModelWeights& w, int ctx, int max_slots, int first, int last)
      : model_(w, ctx, max_slots, first, last), first_(first), last_(last), slots_(max_slots) {}
  const Config& config() const override { return model_.config(); }
  int first_layer() const override { return first_; }
  int last_layer() const override { return last_; }
  size_t kv_cache_bytes() const override { return model_.kv_cache_bytes(); }
  int max_slots() const override { return slots_; }
  void run(std::span<const int32_t> tokens, std::span<const RowPos> rows, const float* in,
           float* out) override {
    if (!tokens.empty()) model_.embed(tokens, out);
    else if (in != out) std::memcpy(out, in, rows.size() * config().hidden * sizeof(float));
    model_.run_layers(first_, last_, rows, out);
  }
  void head(const float* x, std::span<const int32_t> logit_rows, float* logits) override {
    const size_t H = static_cast<size_t>(config().hidden);
    xl_.resize(logit_rows.size() * H);
    for (size_t i = 0; i < logit_rows.size(); ++i)
      std::memcpy(xl_.data() + i * H, x + static_cast<size_t>(logit_rows[i]) * H, H * sizeof(float));
    model_.head(xl_.data(), static_cast<int>(logit_rows.size()), logits);
  }

 private:
  CpuModel model_;
  int first_, last_, slots_;
  std::vector<float> xl_;  // the logit rows, gathered
};

}  // namespace

std::unique_ptr<Stage> make_cpu_stage(const ModelWeights& w, int ctx, int max_slots, int first,
                                      int last) {
  return std::make_unique<CpuStage>(w, ctx, max_slots, first, last);
}

}  // namespace gptoss
