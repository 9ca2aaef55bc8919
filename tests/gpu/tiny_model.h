// tiny_model.h: the GPU tests' random tiny model (the "tiny" config with its vocabulary cut to
// 2000), written once per process to a temporary file that is removed at exit.
#pragma once
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "common/bf16.h"
#include "model/config.h"
#include "model/model_file.h"

namespace gptoss::gputest {

// Writes the model to TMP/gptoss_<tag>_<pid>.bin with seed `seed` (normal weights: norms around 1,
// the rest scaled per tensor kind; E8M0 scales 121..124) and returns its path. Call once per tag
// (callers keep the path in a function-local static).
inline std::string write_tiny_model(const std::string& tag, uint64_t seed) {
  Config c = named_config("tiny");
  c.vocab = 2000;
  const std::string p = (std::filesystem::temp_directory_path() /
                         ("gptoss_" + tag + "_" + std::to_string(getpid()) + ".bin"))
                            .string();
  const auto plan = tensor_plan(c);
  ModelWriter w(p, c, tag + " (synthetic random weights, seed " + std::to_string(seed) + ")", plan);
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> nd;
  for (const auto& [name, spec] : plan) {
    size_t n = 1;
    for (auto d : spec.second) n *= size_t(d);
    if (spec.first == DType::U8) {
      std::vector<uint8_t> v(n);
      const bool scales = name.find("scales") != std::string::npos;
      for (auto& b : v) b = scales ? uint8_t(121 + rng() % 4) : uint8_t(rng() % 256);
      w.write(name, v.data(), n);
      continue;
    }
    float scale = 0.1f, mean = 0.0f;
    if (name == "embedding") scale = 1.0f;
    else if (name == "unembedding") scale = 0.2f;
    else if (name.find("norm") != std::string::npos) mean = 1.0f;
    else if (name.find("qkv.weight") != std::string::npos) scale = 0.15f;
    else if (name.find("sinks") != std::string::npos) scale = 1.0f;
    else if (name.find("router.weight") != std::string::npos) scale = 0.3f;
    else if (name.find("mlp") != std::string::npos) scale = 0.3f;
    std::vector<bf16_t> v(n);
    for (auto& x : v) x = f32_to_bf16(mean + scale * nd(rng));
    w.write(name, v.data(), n * 2);
  }
  w.finish();
  return p;
}

}  // namespace gptoss::gputest
