// config.h: the gpt-oss hyper-parameters every part of the engine reads (see gpt-oss-spec.md).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace gptoss {

struct Config {
  int32_t n_layers = 0;         // num_hidden_layers (24 for 20b, 36 for 120b)
  int32_t hidden = 0;           // hidden_size (2880)
  int32_t intermediate = 0;     // expert intermediate size I (2880); mlp1 has 2I rows
  int32_t n_heads = 0;          // query heads (64)
  int32_t n_kv_heads = 0;       // key/value heads (8)
  int32_t head_dim = 0;         // 64
  int32_t n_experts = 0;        // num_local_experts (32 / 128)
  int32_t experts_per_tok = 0;  // top-k (4)
  int32_t vocab = 0;            // 201088
  int32_t sliding_window = 0;   // 128
  int32_t max_context = 0;      // max_position_embeddings (131072)
  int32_t initial_context = 0;  // YaRN original context (4096)
  float rope_theta = 0;         // 150000
  float rope_factor = 0;        // YaRN scaling factor (32)
  float rope_beta_fast = 0;     // 32
  float rope_beta_slow = 0;     // 1
  float rms_eps = 0;            // 1e-5
  float swiglu_limit = 0;       // 7
  std::vector<uint8_t> sliding; // per layer: 1 = sliding-window attention, 0 = full

  int qkv_rows() const { return (n_heads + 2 * n_kv_heads) * head_dim; }
  int q_dim() const { return n_heads * head_dim; }
  int kv_dim() const { return n_kv_heads * head_dim; }
  // Throws Error("<where>: ...") naming the first field out of range.
  void validate(const std::string& where) const;
};

// The configs the project knows by name: "tiny" (tests), "20b", "120b".
// Throws Error for an unknown name.
Config named_config(const std::string& name);

}  // namespace gptoss
