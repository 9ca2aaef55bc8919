// stage_picks_test.cpp: the pipeline's device-pick path (Backend::picks_on_device -> head_pick, the
// draws made by Scheduler::next_picks when a micro-batch comes back) must give the tokens of the
// host path (head -> logits -> commit) and of the synchronous engine (Scheduler::run_step), for
// sampled requests with several micro-batches in flight. The GPU backend takes the pick path; here
// a CPU backend that claims device picks runs Backend's default head_pick (host logits + pick),
// so the pipeline's bookkeeping is checked without a GPU. One process: a ring of one.
// Usage: pipeline_stage_picks_test TINY.bin (gtest flags after it).
#include <gtest/gtest.h>
#include <mpi.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "comm/world.h"
#include "backend/engine.h"
#include "backend_cpu/cpu_model.h"
#include "model/model_file.h"
#include "pipeline/pipeline.h"
#include "backend/backend.h"
#include "sched/scheduler.h"

namespace gptoss {
namespace {

std::string g_model;

// A CPU backend that says it picks on its device: the pipeline then calls head_pick (Backend's
// default).
class PickingStage final : public Backend {
 public:
  explicit PickingStage(std::unique_ptr<Backend> s) : s_(std::move(s)) {}
  const Config& config() const override { return s_->config(); }
  int first_layer() const override { return s_->first_layer(); }
  int last_layer() const override { return s_->last_layer(); }
  bool has_ends() const override { return s_->has_ends(); }
  int ctx() const override { return s_->ctx(); }
  size_t kv_cache_bytes() const override { return s_->kv_cache_bytes(); }
  int max_slots() const override { return s_->max_slots(); }
  void run(std::span<const int32_t> tokens, std::span<const RowPos> rows, const float* in,
           float* out) override {
    s_->run(tokens, rows, in, out);
  }
  void head(const float* x, std::span<const int32_t> logit_rows, float* logits) override {
    s_->head(x, logit_rows, logits);
  }
  bool picks_on_device() const override { return true; }
  void head_pick(const float* x, std::span<const int32_t> logit_rows,
                 std::span<const TokenPick> picks, std::vector<int32_t>& tokens) override {
    ++head_pick_calls;
    Backend::head_pick(x, logit_rows, picks, tokens);
  }
  static inline int head_pick_calls = 0;

 private:
  std::unique_ptr<Backend> s_;
};

constexpr int kSlots = 3, kCtx = 96;

SchedulerOptions sched_options() {
  SchedulerOptions so;
  so.max_slots = kSlots;
  so.chunk_tokens = 16;
  so.ctx = kCtx;
  so.ignore_eos = true;
  return so;
}

ChooserFactory sampling() {
  return [](uint64_t id) -> std::unique_ptr<TokenChooser> {
    SamplerParams p;
    p.temperature = 0.9f;
    p.top_p = 0.95f;
    p.top_k = id % 2 ? 40 : 0;
    p.seed = 1000 + id;
    return std::make_unique<SamplerChooser>(p);
  };
}

void submit_all(Scheduler& sch) {
  for (uint64_t id = 0; id < 7; ++id) {
    Request r;
    r.id = id;
    for (int i = 0; i < 5 + 7 * static_cast<int>(id % 3); ++i)
      r.tokens.push_back(static_cast<int32_t>((id * 7919 + i * 104729) % 200000));
    r.max_new = 6 + static_cast<int>(id);
    sch.submit(std::move(r));
  }
}

using Tokens = std::map<uint64_t, std::vector<int32_t>>;

Tokens run_pipeline(const ModelFile& m, bool picks, int micro_batches) {
  const ModelWeights w = model_weights(m);
  BackendOptions bo;
  bo.ctx = kCtx;
  bo.max_slots = kSlots;
  BackendFactory f = [&](int first, int last, bool rank0) -> std::unique_ptr<Backend> {
    auto s = make_cpu_backend(w, bo, first, last, rank0);
    if (picks) return std::make_unique<PickingStage>(std::move(s));
    return s;
  };
  PipelineOptions po;
  po.ctx = kCtx;
  po.max_slots = kSlots;
  po.chunk_tokens = 16;
  po.micro_batches = micro_batches;
  Pipeline p(MPI_COMM_WORLD, m.config(), f, po);
  Scheduler sch(sched_options(), sampling());
  Tokens out;
  sch.on_token = [&](uint64_t id, int32_t t) { out[id].push_back(t); };
  submit_all(sch);
  p.run(sch);
  p.finish();
  return out;
}

Tokens run_engine(const ModelFile& m) {
  BackendOptions eo;
  eo.ctx = kCtx;
  eo.max_slots = kSlots;
  auto e = make_cpu_engine(m, eo);
  Scheduler sch(sched_options(), sampling());
  Tokens out;
  sch.on_token = [&](uint64_t id, int32_t t) { out[id].push_back(t); };
  submit_all(sch);
  while (sch.run_step(*e)) {
  }
  return out;
}

TEST(StagePicks, DevicePickPathGivesTheHostPathsTokens) {
  ModelFile m(g_model);
  const Tokens engine = run_engine(m);
  ASSERT_EQ(engine.size(), 7u);
  for (int mb : {3}) {
    PickingStage::head_pick_calls = 0;
    const Tokens with_picks = run_pipeline(m, true, mb);
    EXPECT_GT(PickingStage::head_pick_calls, 0) << "the pipeline never took the pick path";
    const Tokens host = run_pipeline(m, false, mb);
    EXPECT_EQ(with_picks, host) << "micro-batches " << mb;
    EXPECT_EQ(with_picks, engine) << "micro-batches " << mb;
  }
}

}  // namespace
}  // namespace gptoss

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  if (argc < 2) {
    std::fprintf(stderr, "usage: pipeline_stage_picks_test TINY.bin\n");
    return 2;
  }
  gptoss::g_model = argv[1];
  gptoss::comm::World world(&argc, &argv);
  return RUN_ALL_TESTS();
}
