// schema.h: the one table of gpt-oss tensors: every tensor's name, dtype and shape as a function
// of Config. The model file reader validates a file against it, the exporter maps each
// checkpoint layout's names onto it (src/export/layouts.cpp), and the CPU and GPU backends get
// their weight pointers through it (ModelFile::tensor / data by TensorKind), so no other file
// restates a shape.
//
// Shapes (E experts, I intermediate, H hidden, V vocab, Q = heads * head_dim,
// R = (heads + 2 kv_heads) * head_dim):
//   embedding                 bf16 [V, H]
//   layers.L.attn_norm        bf16 [H]
//   layers.L.qkv.weight       bf16 [R, H]      rows = [Q | K | V]
//   layers.L.qkv.bias         bf16 [R]
//   layers.L.sinks            bf16 [heads]
//   layers.L.out.weight       bf16 [H, Q]
//   layers.L.out.bias         bf16 [H]
//   layers.L.mlp_norm         bf16 [H]
//   layers.L.router.weight    bf16 [E, H]
//   layers.L.router.bias      bf16 [E]
//   layers.L.mlp1.blocks      u8   [E, 2I, H/32, 16]   MXFP4; rows interleaved: even = gate, odd = up
//   layers.L.mlp1.scales      u8   [E, 2I, H/32]       E8M0, one per 32-value block
//   layers.L.mlp1.bias        bf16 [E, 2I]
//   layers.L.mlp2.blocks      u8   [E, H, I/32, 16]
//   layers.L.mlp2.scales      u8   [E, H, I/32]
//   layers.L.mlp2.bias        bf16 [E, H]
//   norm                      bf16 [H]
//   unembedding               bf16 [V, H]
// This is also the order of the tensors in a model file (docs/model-format.md).
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "model/config.h"

namespace gptoss {

enum class DType : uint32_t { BF16 = 1, F32 = 2, U8 = 3 };
const char* dtype_name(DType t);
size_t dtype_bytes(DType t);

// Every kind of tensor, in file order: the global ones and, between them, the per-layer ones.
enum class TensorKind : int {
  Embedding,
  AttnNorm, QkvWeight, QkvBias, Sinks, OutWeight, OutBias, MlpNorm,  // per layer
  RouterWeight, RouterBias,                                          // per layer
  Mlp1Blocks, Mlp1Scales, Mlp1Bias, Mlp2Blocks, Mlp2Scales, Mlp2Bias,  // per layer
  Norm,
  Unembedding,
};
inline constexpr int kTensorKinds = 18;
inline constexpr int kLayerTensorKinds = 15;  // AttnNorm .. Mlp2Bias
inline constexpr bool is_layer_kind(TensorKind k) {
  return k >= TensorKind::AttnNorm && k <= TensorKind::Mlp2Bias;
}

struct TensorSpec {
  TensorKind kind = TensorKind::Embedding;
  int layer = -1;              // -1 for the global kinds
  std::string name;            // in the model file: "embedding", "layers.3.qkv.weight"
  DType dtype = DType::BF16;
  std::vector<int64_t> shape;  // outermost first
  uint64_t elems() const;
  uint64_t bytes() const { return elems() * dtype_bytes(dtype); }
};

// The name of a kind without the layer prefix: "embedding", "qkv.weight".
const char* tensor_kind_name(TensorKind k);
// One tensor: `layer` in [0, n_layers) for per-layer kinds, ignored (use -1) for global kinds.
TensorSpec tensor_spec(const Config& c, TensorKind kind, int layer = -1);
// Every tensor of a model of this config, in file order: embedding, layer 0's fifteen ...
// layer n-1's, norm, unembedding.
std::vector<TensorSpec> tensor_schema(const Config& c);

}  // namespace gptoss
