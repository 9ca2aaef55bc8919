// make_sweep_model.cpp: writes a random-weight model file of a mid-size config ("mini": 8 layers,
// hidden 768, 32 experts of 2048, top 4; real vocab so the real tokenizer works) for pipeline
// scaling sweeps on the CPU backend (docs/scaling.md). Its layers weigh enough against the LM
// head for the layer split to matter, unlike the tiny model's; the weights mean nothing.
// usage: pipeline_sweep_model OUT.bin [LAYERS]
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "common/bf16.h"
#include "common/error.h"
#include "model/config.h"
#include "model/model_file.h"

int main(int argc, char** argv) {
  return gptoss::guarded_main("pipeline_sweep_model", [&]() -> int {
    using namespace gptoss;
    if (argc < 2) fail("usage: pipeline_sweep_model OUT.bin [LAYERS]");
    Config c = named_config("20b");
    c.n_layers = argc > 2 ? std::atoi(argv[2]) : 8;
    c.hidden = 768;
    c.intermediate = 2048;
    c.n_heads = 12;
    c.n_kv_heads = 4;
    c.head_dim = 64;
    c.n_experts = 32;
    c.experts_per_tok = 4;
    c.sliding.assign(static_cast<size_t>(c.n_layers), 0);
    for (int i = 0; i < c.n_layers; i += 2) c.sliding[static_cast<size_t>(i)] = 1;
    c.validate("mini");
    auto plan = tensor_plan(c);
    ModelWriter w(argv[1], c, "synthetic random weights (pipeline sweep 'mini')", plan);
    std::mt19937_64 rng(7);
    std::uniform_real_distribution<float> uni(-0.03f, 0.03f);
    for (const auto& [name, spec] : plan) {
      size_t n = 1;
      for (int64_t d : spec.second) n *= static_cast<size_t>(d);
      if (spec.first == DType::U8) {
        std::vector<uint8_t> v(n);
        const bool scales = name.find("scales") != std::string::npos;
        for (auto& b : v) b = scales ? 120 : static_cast<uint8_t>(rng());  // scale 2^-7
        w.write(name, v.data(), v.size());
      } else {
        std::vector<bf16_t> v(n);
        const bool norm = name.find("norm") != std::string::npos;
        for (auto& x : v) x = f32_to_bf16(norm ? 1.0f : uni(rng));
        w.write(name, v.data(), v.size() * sizeof(bf16_t));
      }
    }
    w.finish();
    std::printf("wrote %s: %d layers, hidden %d, %d experts x %d\n", argv[1], c.n_layers, c.hidden,
                c.n_experts, c.intermediate);
    return 0;
  });
}
