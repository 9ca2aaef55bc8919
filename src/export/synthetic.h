// synthetic.h: deterministic random gpt-oss checkpoints (tests, benchmarks) in the Hugging Face
// MXFP4 layout, OpenAI's original/ layout or the legacy fp32 .bin. Values come from a
// counter-based RNG keyed by (seed, our tensor name, element index), so they do not depend on
// thread count or layout: the same seed gives the same model in all three layouts.
#pragma once
#include <cstdint>
#include <string>

#include "export/layouts.h"
#include "model/config.h"

namespace gptoss {

struct SyntheticOptions {
  std::string name;     // named_config(): tiny | 20b | 120b | micro
  std::string out_dir;  // created if missing
  uint64_t seed = 1;
  Layout layout = Layout::HF;
  int shards = 1;       // safetensors files (HF and original layouts)
};

void write_synthetic(const SyntheticOptions& opt);

// The canonical values: elements [first, first + n) of our tensor `dst` (model_file.h names):
// bf16 bits for float tensors, bytes for *.blocks / *.scales.
void synth_bf16(const Config& c, uint64_t seed, const std::string& dst, uint64_t first, uint64_t n,
                uint16_t* out);
void synth_u8(const Config& c, uint64_t seed, const std::string& dst, uint64_t first, uint64_t n,
              uint8_t* out);

// "tiny, seed 1": the label stored as "gptoss_synthetic" in config.json.
std::string synthetic_name(const std::string& name, uint64_t seed);

}  // namespace gptoss
