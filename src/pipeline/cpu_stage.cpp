// cpu_stage.cpp: the CPU backend's pipeline stage (stage.h) over CpuModel.
#include "engine/cpu_model.h"
#include "pipeline/stage.h"

namespace gptoss {
namespace {

class CpuStage final : public Stage {
 public:
  CpuStage(const ModelWeights& w, int ctx, int max_slots, int first, int last)
      : model_(w, ctx, max_slots, first, last), first_(first), last_(last) {}
  const Config& config() const override { return model_.config(); }
  int first_layer() const override { return first_; }
  int last_layer() const override { return last_; }
  size_t kv_cache_bytes() const override { return model_.kv_cache_bytes(); }
  void embed(std::span<const int32_t> tokens, float* x) override { model_.embed(tokens, x); }
  void run_layers(std::span<const RowPos> rows, float* x) override {
    model_.run_layers(first_, last_, rows, x);
  }
  void head(const float* x, int rows, float* logits) override { model_.head(x, rows, logits); }

 private:
  CpuModel model_;
  int first_, last_;
};

}  // namespace

std::unique_ptr<Stage> make_cpu_stage(const ModelWeights& w, int ctx, int max_slots, int first,
                                      int last) {
  return std::make_unique<CpuStage>(w, ctx, max_slots, first, last);
}

}  // namespace gptoss
