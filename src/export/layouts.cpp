// layouts.cpp: each checkpoint layout's names mapped onto the tensor schema (model/schema.h: the
// shapes and dtypes come from there), and config.json reading/writing.
#include "export/layouts.h"

#include <cmath>
#include <cstring>
#include <fstream>
#include <sstream>

#include "common/error.h"
#include "model/schema.h"

namespace gptoss {

namespace {

// Which rows (dim 0) of a schema tensor one checkpoint tensor holds: all, or the q / k / v part
// of qkv.weight and qkv.bias (rows [0, Q), [Q, Q + KV), [Q + KV, R)).
enum class Rows { All, Q, K, V };

// One checkpoint tensor name per schema kind (and row range): "%d" stands for the layer.
struct SourceName {
  TensorKind kind;
  Rows rows;
  const char* pattern;
};

using K = TensorKind;

// Hugging Face (transformers GptOssForCausalLM, MXFP4 experts).
constexpr SourceName kHfNames[] = {
    {K::Embedding, Rows::All, "model.embed_tokens.weight"},
    {K::AttnNorm, Rows::All, "model.layers.%d.input_layernorm.weight"},
    {K::QkvWeight, Rows::Q, "model.layers.%d.self_attn.q_proj.weight"},
    {K::QkvWeight, Rows::K, "model.layers.%d.self_attn.k_proj.weight"},
    {K::QkvWeight, Rows::V, "model.layers.%d.self_attn.v_proj.weight"},
    {K::QkvBias, Rows::Q, "model.layers.%d.self_attn.q_proj.bias"},
    {K::QkvBias, Rows::K, "model.layers.%d.self_attn.k_proj.bias"},
    {K::QkvBias, Rows::V, "model.layers.%d.self_attn.v_proj.bias"},
    {K::Sinks, Rows::All, "model.layers.%d.self_attn.sinks"},
    {K::OutWeight, Rows::All, "model.layers.%d.self_attn.o_proj.weight"},
    {K::OutBias, Rows::All, "model.layers.%d.self_attn.o_proj.bias"},
    {K::MlpNorm, Rows::All, "model.layers.%d.post_attention_layernorm.weight"},
    {K::RouterWeight, Rows::All, "model.layers.%d.mlp.router.weight"},
    {K::RouterBias, Rows::All, "model.layers.%d.mlp.router.bias"},
    {K::Mlp1Blocks, Rows::All, "model.layers.%d.mlp.experts.gate_up_proj_blocks"},
    {K::Mlp1Scales, Rows::All, "model.layers.%d.mlp.experts.gate_up_proj_scales"},
    {K::Mlp1Bias, Rows::All, "model.layers.%d.mlp.experts.gate_up_proj_bias"},
    {K::Mlp2Blocks, Rows::All, "model.layers.%d.mlp.experts.down_proj_blocks"},
    {K::Mlp2Scales, Rows::All, "model.layers.%d.mlp.experts.down_proj_scales"},
    {K::Mlp2Bias, Rows::All, "model.layers.%d.mlp.experts.down_proj_bias"},
    {K::Norm, Rows::All, "model.norm.weight"},
    {K::Unembedding, Rows::All, "lm_head.weight"},
};

// OpenAI's original/ checkpoint (gpt_oss torch reference).
constexpr SourceName kOriginalNames[] = {
    {K::Embedding, Rows::All, "embedding.weight"},
    {K::AttnNorm, Rows::All, "block.%d.attn.norm.scale"},
    {K::QkvWeight, Rows::All, "block.%d.attn.qkv.weight"},
    {K::QkvBias, Rows::All, "block.%d.attn.qkv.bias"},
    {K::Sinks, Rows::All, "block.%d.attn.sinks"},
    {K::OutWeight, Rows::All, "block.%d.attn.out.weight"},
    {K::OutBias, Rows::All, "block.%d.attn.out.bias"},
    {K::MlpNorm, Rows::All, "block.%d.mlp.norm.scale"},
    {K::RouterWeight, Rows::All, "block.%d.mlp.gate.weight"},
    {K::RouterBias, Rows::All, "block.%d.mlp.gate.bias"},
    {K::Mlp1Blocks, Rows::All, "block.%d.mlp.mlp1_weight.blocks"},
    {K::Mlp1Scales, Rows::All, "block.%d.mlp.mlp1_weight.scales"},
    {K::Mlp1Bias, Rows::All, "block.%d.mlp.mlp1_bias"},
    {K::Mlp2Blocks, Rows::All, "block.%d.mlp.mlp2_weight.blocks"},
    {K::Mlp2Scales, Rows::All, "block.%d.mlp.mlp2_weight.scales"},
    {K::Mlp2Bias, Rows::All, "block.%d.mlp.mlp2_bias"},
    {K::Norm, Rows::All, "norm.scale"},
    {K::Unembedding, Rows::All, "unembedding.weight"},
};

// Legacy fp32 .bin: each kind over all layers (or the global tensor), in this file order. The
// expert weights (mlp1 / mlp2) are one fp32 [E, rows, cols] array per layer that becomes the
// schema's .blocks and .scales; their scales kinds have no array of their own.
constexpr TensorKind kLegacyOrder[] = {
    K::Embedding, K::Unembedding, K::AttnNorm, K::MlpNorm,     K::Norm,       K::QkvWeight,
    K::QkvBias,   K::OutWeight,   K::OutBias,  K::Sinks,       K::RouterWeight, K::RouterBias,
    K::Mlp1Blocks, K::Mlp1Bias,   K::Mlp2Blocks, K::Mlp2Bias,
};

}  // namespace

std::vector<SourcePiece> source_pieces(const Config& c, Layout layout) {
  GPTOSS_ASSERT(layout == Layout::HF || layout == Layout::Original);
  const int64_t Q = c.q_dim(), KV = c.kv_dim();
  std::vector<SourcePiece> v;
  for (const TensorSpec& t : tensor_schema(c)) {
    const uint64_t row_elems = t.elems() / static_cast<uint64_t>(t.shape[0]);
    uint64_t covered = 0;
    auto add = [&](const SourceName& s) {
      int64_t r0 = 0, rows = t.shape[0];
      if (s.rows == Rows::Q) r0 = 0, rows = Q;
      if (s.rows == Rows::K) r0 = Q, rows = KV;
      if (s.rows == Rows::V) r0 = Q + KV, rows = KV;
      std::vector<int64_t> shape = t.shape;
      shape[0] = rows;
      std::string name = s.pattern;
      if (size_t at = name.find("%d"); at != std::string::npos)
        name.replace(at, 2, std::to_string(t.layer));
      const uint64_t n = static_cast<uint64_t>(rows) * row_elems;
      v.push_back({name, std::move(shape), t.name, static_cast<uint64_t>(r0) * row_elems, n,
                   t.dtype == DType::U8});
      covered += n;
    };
    if (layout == Layout::HF) {
      for (const SourceName& s : kHfNames)
        if (s.kind == t.kind) add(s);
    } else {
      for (const SourceName& s : kOriginalNames)
        if (s.kind == t.kind) add(s);
    }
    GPTOSS_ASSERT(covered == t.elems());  // every schema tensor comes whole from the checkpoint
  }
  return v;
}

std::vector<LegacyPiece> legacy_pieces(const Config& c) {
  std::vector<LegacyPiece> v;
  uint64_t at = kLegacyHeaderBytes, covered_bytes = 0;
  for (TensorKind kind : kLegacyOrder) {
    for (int l = is_layer_kind(kind) ? 0 : -1; l < (is_layer_kind(kind) ? c.n_layers : 0); l++) {
      const TensorSpec t = tensor_spec(c, kind, l);
      LegacyPiece p;
      p.dst_name = t.name;
      p.elems = t.elems();
      p.file_offset = at;
      covered_bytes += t.bytes();
      if (kind == K::Mlp1Blocks || kind == K::Mlp2Blocks) {
        // [E, rows, H/32 or I/32, 16] blocks of 32 values: fp32 [E, rows, cols].
        const TensorSpec scales =
            tensor_spec(c, kind == K::Mlp1Blocks ? K::Mlp1Scales : K::Mlp2Scales, l);
        covered_bytes += scales.bytes();
        p.dst_name = t.name.substr(0, t.name.size() - std::string(".blocks").size());
        p.expert = true;
        p.experts = t.shape[0];
        p.rows = t.shape[1];
        p.cols = t.shape[2] * 32;
        p.elems = static_cast<uint64_t>(p.experts * p.rows * p.cols);
      }
      at += 4 * p.elems;
      v.push_back(std::move(p));
    }
  }
  uint64_t schema_bytes = 0;
  for (const TensorSpec& t : tensor_schema(c)) schema_bytes += t.bytes();
  GPTOSS_ASSERT(covered_bytes == schema_bytes);  // every schema tensor has its legacy array
  return v;
}

uint64_t legacy_file_bytes(const Config& c) {
  const auto v = legacy_pieces(c);
  return v.back().file_offset + 4 * v.back().elems;
}

void legacy_header(const Config& c, uint8_t out[60]) {
  int32_t h[15] = {c.vocab,         c.hidden,   c.n_experts, c.experts_per_tok, c.intermediate,
                   c.n_layers,      c.head_dim, c.n_heads,   c.n_kv_heads,      c.max_context,
                   c.initial_context, 0,        0,           c.sliding_window,  0};
  std::memcpy(&h[11], &c.rope_theta, 4);
  std::memcpy(&h[12], &c.rope_factor, 4);
  std::memcpy(&h[14], &c.swiglu_limit, 4);
  std::memcpy(out, h, 60);
}

Config parse_legacy_header(const uint8_t* p, const std::string& path) {
  int32_t h[15];
  std::memcpy(h, p, 60);
  Config c;
  c.vocab = h[0];
  c.hidden = h[1];
  c.n_experts = h[2];
  c.experts_per_tok = h[3];
  c.intermediate = h[4];
  c.n_layers = h[5];
  c.head_dim = h[6];
  c.n_heads = h[7];
  c.n_kv_heads = h[8];
  c.max_context = h[9];
  c.initial_context = h[10];
  std::memcpy(&c.rope_theta, &h[11], 4);
  std::memcpy(&c.rope_factor, &h[12], 4);
  c.sliding_window = h[13];
  std::memcpy(&c.swiglu_limit, &h[14], 4);
  // Not in the legacy header: the gpt-oss values.
  c.rope_beta_fast = 32.0f;
  c.rope_beta_slow = 1.0f;
  c.rms_eps = 1e-5f;
  if (c.n_layers >= 1 && c.n_layers <= 1024) {
    c.sliding.assign(static_cast<size_t>(c.n_layers), 0);
    for (int i = 0; i < c.n_layers; i += 2) c.sliding[static_cast<size_t>(i)] = 1;
  }
  c.validate(path + " (legacy header)");
  return c;
}

// ---------------------------------------------------------------------------------------------
// config.json

namespace {
// The shortest decimal that reads back as the same float (1e-05, not 9.99999974737875e-06).
double short_float(float f) {
  for (int prec = 6; prec <= 9; prec++) {
    const double d = std::strtod(strfmt("%.*g", prec, static_cast<double>(f)).c_str(), nullptr);
    if (static_cast<float>(d) == f) return d;
  }
  return f;
}
}  // namespace

nlohmann::json hf_config_json(const Config& c, const std::string& synthetic) {
  nlohmann::json layer_types = nlohmann::json::array();
  for (uint8_t s : c.sliding) layer_types.push_back(s ? "sliding_attention" : "full_attention");
  nlohmann::json j = {
      {"architectures", {"GptOssForCausalLM"}},
      {"model_type", "gpt_oss"},
      {"num_hidden_layers", c.n_layers},
      {"hidden_size", c.hidden},
      {"intermediate_size", c.intermediate},
      {"num_attention_heads", c.n_heads},
      {"num_key_value_heads", c.n_kv_heads},
      {"head_dim", c.head_dim},
      {"num_local_experts", c.n_experts},
      {"num_experts_per_tok", c.experts_per_tok},
      {"experts_per_token", c.experts_per_tok},
      {"vocab_size", c.vocab},
      {"sliding_window", c.sliding_window},
      {"layer_types", layer_types},
      {"rope_theta", short_float(c.rope_theta)},
      {"rope_scaling",
       {{"rope_type", "yarn"},
        {"factor", short_float(c.rope_factor)},
        {"beta_fast", short_float(c.rope_beta_fast)},
        {"beta_slow", short_float(c.rope_beta_slow)},
        {"original_max_position_embeddings", c.initial_context},
        {"truncate", false}}},
      {"rms_norm_eps", short_float(c.rms_eps)},
      {"swiglu_limit", short_float(c.swiglu_limit)},
      {"initial_context_length", c.initial_context},
      {"max_position_embeddings", c.max_context},
      {"attention_bias", true},
      {"attention_dropout", 0.0},
      {"hidden_act", "silu"},
      {"tie_word_embeddings", false},
      {"pad_token_id", 199999},
      {"eos_token_id", 200002},
      {"torch_dtype", "bfloat16"},
      {"use_cache", true},
      {"output_router_logits", false},
      {"router_aux_loss_coef", 0.9},
      {"quantization_config",
       {{"quant_method", "mxfp4"},
        {"modules_to_not_convert",
         {"model.layers.*.self_attn", "model.layers.*.mlp.router", "model.embed_tokens",
          "lm_head"}}}},
  };
  if (!synthetic.empty()) j["gptoss_synthetic"] = synthetic;
  return j;
}

nlohmann::json original_config_json(const Config& c, const std::string& synthetic) {
  nlohmann::json j = {
      {"num_hidden_layers", c.n_layers},      {"num_experts", c.n_experts},
      {"experts_per_token", c.experts_per_tok}, {"vocab_size", c.vocab},
      {"hidden_size", c.hidden},              {"intermediate_size", c.intermediate},
      {"swiglu_limit", short_float(c.swiglu_limit)},       {"head_dim", c.head_dim},
      {"num_attention_heads", c.n_heads},     {"num_key_value_heads", c.n_kv_heads},
      {"sliding_window", c.sliding_window},   {"initial_context_length", c.initial_context},
      {"rope_theta", short_float(c.rope_theta)},           {"rope_scaling_factor", short_float(c.rope_factor)},
      {"rope_ntk_alpha", short_float(c.rope_beta_slow)},   {"rope_ntk_beta", short_float(c.rope_beta_fast)},
  };
  // Not in OpenAI's file, which implies them; written when they differ from those defaults.
  if (c.max_context != 131072) j["max_position_embeddings"] = c.max_context;
  if (c.rms_eps != 1e-5f) j["rms_norm_eps"] = c.rms_eps;
  bool even_sliding = true;
  for (size_t i = 0; i < c.sliding.size(); i++) even_sliding &= c.sliding[i] == (i % 2 == 0);
  if (!even_sliding) {
    nlohmann::json lt = nlohmann::json::array();
    for (uint8_t s : c.sliding) lt.push_back(s ? "sliding_attention" : "full_attention");
    j["layer_types"] = lt;
  }
  if (!synthetic.empty()) j["gptoss_synthetic"] = synthetic;
  return j;
}

nlohmann::json read_json_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) fail("%s: cannot open: %s", path.c_str(), std::strerror(errno));
  std::stringstream ss;
  ss << f.rdbuf();
  try {
    nlohmann::json j = nlohmann::json::parse(ss.str());
    if (!j.is_object()) fail("%s: not a JSON object", path.c_str());
    return j;
  } catch (const nlohmann::json::exception& e) {
    std::string msg = e.what();
    fail("%s: invalid JSON: %s", path.c_str(), msg.c_str());
  }
}

namespace {

const nlohmann::json* field(const nlohmann::json& j, const char* key) {
  auto it = j.find(key);
  return it == j.end() || it->is_null() ? nullptr : &*it;
}

int32_t get_int(const nlohmann::json& j, const char* key, const std::string& path,
                const int32_t* def = nullptr) {
  const nlohmann::json* v = field(j, key);
  if (!v) {
    if (def) return *def;
    fail("%s: missing field \"%s\"", path.c_str(), key);
  }
  if (v->is_number_float() && std::floor(v->get<double>()) == v->get<double>() &&
      std::fabs(v->get<double>()) < 2e9)
    return static_cast<int32_t>(v->get<double>());
  if (!v->is_number_integer())
    fail("%s: field \"%s\" must be an integer (got %s)", path.c_str(), key, v->dump().c_str());
  const int64_t x = v->get<int64_t>();
  if (x < INT32_MIN || x > INT32_MAX)
    fail("%s: field \"%s\" = %lld is out of range", path.c_str(), key, static_cast<long long>(x));
  return static_cast<int32_t>(x);
}

float get_float(const nlohmann::json& j, const char* key, const std::string& path,
                const float* def = nullptr) {
  const nlohmann::json* v = field(j, key);
  if (!v) {
    if (def) return *def;
    fail("%s: missing field \"%s\"", path.c_str(), key);
  }
  if (!v->is_number())
    fail("%s: field \"%s\" must be a number (got %s)", path.c_str(), key, v->dump().c_str());
  return static_cast<float>(v->get<double>());
}

void default_sliding(Config& c) {
  c.sliding.clear();
  if (c.n_layers < 1 || c.n_layers > 1024) return;  // validate() reports it
  c.sliding.assign(static_cast<size_t>(c.n_layers), 0);
  for (int i = 0; i < c.n_layers; i += 2) c.sliding[static_cast<size_t>(i)] = 1;
}

void read_layer_types(const nlohmann::json& j, Config& c, const std::string& path) {
  const nlohmann::json* lt = field(j, "layer_types");
  if (!lt) return default_sliding(c);
  if (!lt->is_array() || lt->size() != static_cast<size_t>(c.n_layers))
    fail("%s: \"layer_types\" must be a list of %d entries", path.c_str(), c.n_layers);
  c.sliding.clear();
  for (const auto& t : *lt) {
    if (t == "sliding_attention")
      c.sliding.push_back(1);
    else if (t == "full_attention")
      c.sliding.push_back(0);
    else
      fail("%s: unknown layer type %s in \"layer_types\"", path.c_str(), t.dump().c_str());
  }
}

}  // namespace

Config parse_hf_config(const nlohmann::json& j, const std::string& path) {
  Config c;
  const int32_t d131072 = 131072;
  const float d_eps = 1e-5f, d_limit = 7.0f;
  c.n_layers = get_int(j, "num_hidden_layers", path);
  c.hidden = get_int(j, "hidden_size", path);
  c.intermediate = get_int(j, "intermediate_size", path);
  c.n_heads = get_int(j, "num_attention_heads", path);
  c.n_kv_heads = get_int(j, "num_key_value_heads", path);
  c.head_dim = get_int(j, "head_dim", path);
  c.n_experts = get_int(j, "num_local_experts", path);
  if (field(j, "num_experts_per_tok"))
    c.experts_per_tok = get_int(j, "num_experts_per_tok", path);
  else
    c.experts_per_tok = get_int(j, "experts_per_token", path);
  c.vocab = get_int(j, "vocab_size", path);
  c.sliding_window = get_int(j, "sliding_window", path);
  c.max_context = get_int(j, "max_position_embeddings", path, &d131072);
  c.rms_eps = get_float(j, "rms_norm_eps", path, &d_eps);
  c.swiglu_limit = get_float(j, "swiglu_limit", path, &d_limit);
  // RoPE: "rope_scaling" (transformers 4.x files) or "rope_parameters" (5.x), theta either
  // inside rope_parameters or at the top level.
  const nlohmann::json* rope = field(j, "rope_parameters");
  if (!rope) rope = field(j, "rope_scaling");
  if (!rope || !rope->is_object())
    fail("%s: missing \"rope_scaling\" (or \"rope_parameters\") object", path.c_str());
  const std::string rp = path + " rope_scaling";
  if (field(*rope, "rope_type") && (*rope)["rope_type"] != "yarn")
    fail("%s: rope_type %s is not supported (gpt-oss uses yarn)", path.c_str(),
         (*rope)["rope_type"].dump().c_str());
  if (field(*rope, "truncate") && (*rope)["truncate"] != false)
    fail("%s: rope_scaling truncate = %s is not supported (gpt-oss uses false)", path.c_str(),
         (*rope)["truncate"].dump().c_str());
  if (field(*rope, "rope_theta"))
    c.rope_theta = get_float(*rope, "rope_theta", rp);
  else
    c.rope_theta = get_float(j, "rope_theta", path);
  const float d_fast = 32.0f, d_slow = 1.0f;
  c.rope_factor = get_float(*rope, "factor", rp);
  c.rope_beta_fast = get_float(*rope, "beta_fast", rp, &d_fast);
  c.rope_beta_slow = get_float(*rope, "beta_slow", rp, &d_slow);
  const int32_t d4096 = 4096;
  const int32_t orig = get_int(*rope, "original_max_position_embeddings", rp, &d4096);
  c.initial_context = get_int(j, "initial_context_length", path, &orig);
  if (const nlohmann::json* q = field(j, "quantization_config")) {
    if (!q->is_object() || !field(*q, "quant_method") || (*q)["quant_method"] != "mxfp4")
      fail("%s: quantization_config is not mxfp4 (only MXFP4 expert checkpoints are supported)",
           path.c_str());
  }
  read_layer_types(j, c, path);
  c.validate(path);
  return c;
}

Config parse_original_config(const nlohmann::json& j, const std::string& path) {
  Config c;
  const int32_t d131072 = 131072, d4096 = 4096;
  const float d_eps = 1e-5f, d_limit = 7.0f, d_fast = 32.0f, d_slow = 1.0f;
  c.n_layers = get_int(j, "num_hidden_layers", path);
  c.hidden = get_int(j, "hidden_size", path);
  c.intermediate = get_int(j, "intermediate_size", path);
  c.n_heads = get_int(j, "num_attention_heads", path);
  c.n_kv_heads = get_int(j, "num_key_value_heads", path);
  c.head_dim = get_int(j, "head_dim", path);
  c.n_experts = get_int(j, "num_experts", path);
  c.experts_per_tok = get_int(j, "experts_per_token", path);
  c.vocab = get_int(j, "vocab_size", path);
  c.sliding_window = get_int(j, "sliding_window", path);
  c.initial_context = get_int(j, "initial_context_length", path, &d4096);
  c.max_context = get_int(j, "max_position_embeddings", path, &d131072);
  c.rope_theta = get_float(j, "rope_theta", path);
  c.rope_factor = get_float(j, "rope_scaling_factor", path);
  c.rope_beta_slow = get_float(j, "rope_ntk_alpha", path, &d_slow);
  c.rope_beta_fast = get_float(j, "rope_ntk_beta", path, &d_fast);
  c.rms_eps = get_float(j, "rms_norm_eps", path, &d_eps);
  c.swiglu_limit = get_float(j, "swiglu_limit", path, &d_limit);
  read_layer_types(j, c, path);
  c.validate(path);
  return c;
}

std::string synthetic_label(const nlohmann::json& j) {
  auto it = j.find("gptoss_synthetic");
  return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
}

}  // namespace gptoss
