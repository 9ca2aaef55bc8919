// config.cpp: Config::validate (sanity limits for every field) and the named configs.
#include "model/config.h"

#include <cmath>

#include "common/error.h"

namespace gptoss {

namespace {

void check_int(const std::string& where, const char* field, int64_t v, int64_t lo, int64_t hi) {
  if (v < lo || v > hi)
    fail("%s: config %s = %lld is out of range [%lld, %lld]", where.c_str(), field,
         static_cast<long long>(v), static_cast<long long>(lo), static_cast<long long>(hi));
}

void check_float(const std::string& where, const char* field, float v, double lo, double hi) {
  if (!std::isfinite(v) || v < lo || v > hi)
    fail("%s: config %s = %g is not a finite value in [%g, %g]", where.c_str(), field,
         static_cast<double>(v), lo, hi);
}

}  // namespace

void Config::validate(const std::string& where) const {
  // Limits keep every size product (e.g. E * 2I * H, layers * that) far below 2^63.
  check_int(where, "n_layers", n_layers, 1, 1024);
  check_int(where, "hidden", hidden, 32, 65536);
  if (hidden % 32 != 0) fail("%s: config hidden = %d is not a multiple of 32", where.c_str(), hidden);
  check_int(where, "intermediate", intermediate, 32, 65536);
  if (intermediate % 32 != 0)
    fail("%s: config intermediate = %d is not a multiple of 32", where.c_str(), intermediate);
  check_int(where, "n_heads", n_heads, 1, 1024);
  check_int(where, "n_kv_heads", n_kv_heads, 1, n_heads);
  if (n_heads % n_kv_heads != 0)
    fail("%s: config n_heads = %d is not a multiple of n_kv_heads = %d", where.c_str(), n_heads,
         n_kv_heads);
  check_int(where, "head_dim", head_dim, 2, 1024);
  if (head_dim % 2 != 0) fail("%s: config head_dim = %d is odd", where.c_str(), head_dim);
  check_int(where, "n_experts", n_experts, 1, 4096);
  check_int(where, "experts_per_tok", experts_per_tok, 1, n_experts);
  check_int(where, "vocab", vocab, 1, int64_t{1} << 24);
  check_int(where, "max_context", max_context, 1, int64_t{1} << 24);
  check_int(where, "initial_context", initial_context, 1, int64_t{1} << 24);
  check_int(where, "sliding_window", sliding_window, 1, int64_t{1} << 24);
  check_float(where, "rope_theta", rope_theta, 1.0, 1e12);
  check_float(where, "rope_factor", rope_factor, 1.0, 1e6);
  check_float(where, "rope_beta_fast", rope_beta_fast, 1e-6, 1e6);
  check_float(where, "rope_beta_slow", rope_beta_slow, 1e-6, 1e6);
  check_float(where, "rms_eps", rms_eps, 1e-30, 1.0);
  if (!(rms_eps > 0)) fail("%s: config rms_eps = %g must be positive", where.c_str(), rms_eps);
  check_float(where, "swiglu_limit", swiglu_limit, 1e-6, 1e6);
  if (sliding.size() != static_cast<size_t>(n_layers))
    fail("%s: config has %zu per-layer sliding flags for %d layers", where.c_str(), sliding.size(),
         n_layers);
  for (size_t i = 0; i < sliding.size(); i++)
    if (sliding[i] > 1)
      fail("%s: config sliding flag of layer %zu is %u (must be 0 or 1)", where.c_str(), i,
           sliding[i]);
}

Config named_config(const std::string& name) {
  Config c;
  c.n_layers = 24;
  c.hidden = 2880;
  c.intermediate = 2880;
  c.n_heads = 64;
  c.n_kv_heads = 8;
  c.head_dim = 64;
  c.n_experts = 32;
  c.experts_per_tok = 4;
  c.vocab = 201088;
  c.sliding_window = 128;
  c.max_context = 131072;
  c.initial_context = 4096;
  c.rope_theta = 150000.0f;
  c.rope_factor = 32.0f;
  c.rope_beta_fast = 32.0f;
  c.rope_beta_slow = 1.0f;
  c.rms_eps = 1e-5f;
  c.swiglu_limit = 7.0f;
  if (name == "20b") {
  } else if (name == "120b") {
    c.n_layers = 36;
    c.n_experts = 128;
  } else if (name == "tiny") {
    // Tests and the default model: real vocab and head_dim, GQA, hidden != heads * head_dim,
    // top-4 of 8 experts, a window small enough that short generations pass it.
    c.n_layers = 4;
    c.hidden = 192;
    c.intermediate = 128;
    c.n_heads = 8;
    c.n_kv_heads = 2;
    c.sliding_window = 16;
    c.n_experts = 8;
  } else if (name == "micro") {
    // Unit tests only (small vocab so files are a few MB).
    c.n_layers = 2;
    c.hidden = 64;
    c.intermediate = 96;
    c.n_heads = 4;
    c.n_kv_heads = 2;
    c.head_dim = 16;
    c.n_experts = 4;
    c.experts_per_tok = 2;
    c.vocab = 1024;
    c.sliding_window = 4;
  } else {
    fail("unknown model config name '%s' (known: tiny, 20b, 120b, micro)", name.c_str());
  }
  c.sliding.assign(static_cast<size_t>(c.n_layers), 0);
  for (int i = 0; i < c.n_layers; i += 2) c.sliding[static_cast<size_t>(i)] = 1;  // even layers
  return c;
}

}  // namespace gptoss
