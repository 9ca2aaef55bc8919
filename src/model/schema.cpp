// schema.cpp: the tensor table of schema.h: names, dtypes and shapes from the Config.
#include "model/schema.h"

#include "common/error.h"

namespace gptoss {

const char* dtype_name(DType t) {
  switch (t) {
    case DType::BF16: return "bf16";
    case DType::F32: return "f32";
    case DType::U8: return "u8";
  }
  return "invalid";
}

size_t dtype_bytes(DType t) {
  switch (t) {
    case DType::BF16: return 2;
    case DType::F32: return 4;
    case DType::U8: return 1;
  }
  return 0;
}

uint64_t TensorSpec::elems() const {
  uint64_t n = 1;
  for (int64_t d : shape) n *= static_cast<uint64_t>(d);
  return n;
}

const char* tensor_kind_name(TensorKind k) {
  switch (k) {
    case TensorKind::Embedding: return "embedding";
    case TensorKind::AttnNorm: return "attn_norm";
    case TensorKind::QkvWeight: return "qkv.weight";
    case TensorKind::QkvBias: return "qkv.bias";
    case TensorKind::Sinks: return "sinks";
    case TensorKind::OutWeight: return "out.weight";
    case TensorKind::OutBias: return "out.bias";
    case TensorKind::MlpNorm: return "mlp_norm";
    case TensorKind::RouterWeight: return "router.weight";
    case TensorKind::RouterBias: return "router.bias";
    case TensorKind::Mlp1Blocks: return "mlp1.blocks";
    case TensorKind::Mlp1Scales: return "mlp1.scales";
    case TensorKind::Mlp1Bias: return "mlp1.bias";
    case TensorKind::Mlp2Blocks: return "mlp2.blocks";
    case TensorKind::Mlp2Scales: return "mlp2.scales";
    case TensorKind::Mlp2Bias: return "mlp2.bias";
    case TensorKind::Norm: return "norm";
    case TensorKind::Unembedding: return "unembedding";
  }
  return "invalid";
}

TensorSpec tensor_spec(const Config& c, TensorKind kind, int layer) {
  const int64_t V = c.vocab, H = c.hidden, I = c.intermediate, E = c.n_experts;
  const int64_t R = c.qkv_rows(), Q = c.q_dim();
  using K = TensorKind;
  TensorSpec s;
  s.kind = kind;
  s.dtype = DType::BF16;
  if (is_layer_kind(kind)) {
    GPTOSS_ASSERT(layer >= 0 && layer < c.n_layers);
    s.layer = layer;
    s.name = "layers." + std::to_string(layer) + "." + tensor_kind_name(kind);
  } else {
    s.name = tensor_kind_name(kind);
  }
  switch (kind) {
    case K::Embedding: s.shape = {V, H}; break;
    case K::AttnNorm: s.shape = {H}; break;
    case K::QkvWeight: s.shape = {R, H}; break;
    case K::QkvBias: s.shape = {R}; break;
    case K::Sinks: s.shape = {c.n_heads}; break;
    case K::OutWeight: s.shape = {H, Q}; break;
    case K::OutBias: s.shape = {H}; break;
    case K::MlpNorm: s.shape = {H}; break;
    case K::RouterWeight: s.shape = {E, H}; break;
    case K::RouterBias: s.shape = {E}; break;
    case K::Mlp1Blocks: s.dtype = DType::U8, s.shape = {E, 2 * I, H / 32, 16}; break;
    case K::Mlp1Scales: s.dtype = DType::U8, s.shape = {E, 2 * I, H / 32}; break;
    case K::Mlp1Bias: s.shape = {E, 2 * I}; break;
    case K::Mlp2Blocks: s.dtype = DType::U8, s.shape = {E, H, I / 32, 16}; break;
    case K::Mlp2Scales: s.dtype = DType::U8, s.shape = {E, H, I / 32}; break;
    case K::Mlp2Bias: s.shape = {E, H}; break;
    case K::Norm: s.shape = {H}; break;
    case K::Unembedding: s.shape = {V, H}; break;
  }
  return s;
}

std::vector<TensorSpec> tensor_schema(const Config& c) {
  std::vector<TensorSpec> v;
  v.reserve(static_cast<size_t>(c.n_layers) * kLayerTensorKinds + 3);
  v.push_back(tensor_spec(c, TensorKind::Embedding));
  for (int l = 0; l < c.n_layers; l++)
    for (int k = int(TensorKind::AttnNorm); k <= int(TensorKind::Mlp2Bias); k++)
      v.push_back(tensor_spec(c, TensorKind(k), l));
  v.push_back(tensor_spec(c, TensorKind::Norm));
  v.push_back(tensor_spec(c, TensorKind::Unembedding));
  return v;
}

}  // namespace gptoss
