// roofline.cpp: bytes and flops of decode and prefill (roofline.h).
#include "run/roofline.h"

#include <algorithm>
#include <cmath>

#include "model/schema.h"

namespace gptoss {

namespace {

struct Shape {
  double dense_bytes = 0;   // per layer, read once per step
  double expert_bytes = 0;  // per expert of a layer
  double head_bytes = 0;    // final norm + LM head
  double dense_params = 0, expert_params = 0;  // per layer / per expert, for flops
};

Shape shape_of(const Config& c) {
  Shape s;
  for (const TensorSpec& t : tensor_schema(c)) {
    const double b = static_cast<double>(t.bytes());
    switch (t.kind) {
      case TensorKind::Embedding: break;  // one row per token: negligible
      case TensorKind::Norm:
      case TensorKind::Unembedding: s.head_bytes += b; break;
      case TensorKind::Mlp1Blocks: case TensorKind::Mlp1Scales: case TensorKind::Mlp1Bias:
      case TensorKind::Mlp2Blocks: case TensorKind::Mlp2Scales: case TensorKind::Mlp2Bias:
        if (t.layer == 0) s.expert_bytes += b / c.n_experts;
        break;
      default:
        if (t.layer == 0) s.dense_bytes += b;
    }
  }
  const double H = c.hidden, I = c.intermediate;
  s.dense_params = c.qkv_rows() * H + H * c.q_dim() + c.n_experts * H;
  s.expert_params = 2 * I * H + H * I;
  return s;
}

double touched(const Config& c, double rows) {
  const double E = c.n_experts, k = c.experts_per_tok;
  return E * (1.0 - std::pow(1.0 - k / E, std::max(rows, 1.0)));
}

// Keys a row at position pos attends to, summed over the layers.
double keys_over_layers(const Config& c, double pos) {
  double keys = 0;
  for (int l = 0; l < c.n_layers; ++l) {
    const bool sliding = c.sliding[static_cast<size_t>(l)] != 0 && c.sliding_window > 0;
    keys += sliding ? std::min<double>(pos, c.sliding_window) : pos;
  }
  return keys;
}

}  // namespace

Work decode_step(const Config& c, int batch, double pos, int kv_elem_bytes) {
  const Shape s = shape_of(c);
  const double B = std::max(1, batch);
  const double keys = keys_over_layers(c, pos);
  Work w;
  w.bytes = c.n_layers * (s.dense_bytes + touched(c, B) * s.expert_bytes) + s.head_bytes +
            B * keys * 2.0 * c.kv_dim() * kv_elem_bytes;
  const double per_row = c.n_layers * 2.0 * (s.dense_params + c.experts_per_tok * s.expert_params) +
                         2.0 * c.vocab * c.hidden + 4.0 * c.q_dim() * keys;
  w.flops = B * per_row;
  return w;
}

Work prefill(const Config& c, int batch, int tokens, int step_rows) {
  const Shape s = shape_of(c);
  const double B = std::max(1, batch), T = std::max(1, tokens);
  const double rows = std::max(1, step_rows);
  const double steps = std::ceil(B * T / rows);
  Work w;
  w.bytes = steps * c.n_layers * (s.dense_bytes + touched(c, std::min(rows, B * T)) * s.expert_bytes) +
            std::min(steps, B) * s.head_bytes;
  // Attention: the row at position p attends to keys_over_layers(p) keys; summed over p < T.
  double keys = 0;
  for (int p = 1; p <= tokens; ++p) keys += keys_over_layers(c, p);
  w.flops = B * (T * c.n_layers * 2.0 * (s.dense_params + c.experts_per_tok * s.expert_params) +
                 4.0 * c.q_dim() * keys) +
            B * 2.0 * c.vocab * c.hidden;
  return w;
}

double limit_tok_s(const Work& w, double tokens, const Peak& p) {
  double t = 0;
  if (p.gbs > 0) t = std::max(t, w.bytes / (p.gbs * 1e9));
  if (p.tflops > 0) t = std::max(t, w.flops / (p.tflops * 1e12));
  return t > 0 ? tokens / t : 0;
}

}  // namespace gptoss
