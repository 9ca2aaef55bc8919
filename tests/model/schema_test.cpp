// schema_test.cpp: the tensor schema (src/model/schema.h) and ModelFile's access by kind: the
// schema lists every tensor once in file order, a written file's directory is exactly it, and
// tensor(kind, layer) / data<T>(kind, layer) find the same tensor as its name, refusing a layer
// for a global kind (or none for a per-layer kind) and an element type of the wrong size.
#include <gtest/gtest.h>

#include <set>
#include <vector>

#include "common/error.h"
#include "model/config.h"
#include "model/model_file.h"
#include "model/schema.h"

using namespace gptoss;

TEST(Schema, EveryTensorOnceInFileOrder) {
  for (const char* name : {"micro", "tiny", "20b", "120b"}) {
    const Config c = named_config(name);
    const std::vector<TensorSpec> s = tensor_schema(c);
    ASSERT_EQ(s.size(), size_t(3 + kLayerTensorKinds * c.n_layers)) << name;
    std::set<std::string> names;
    for (const TensorSpec& t : s) {
      EXPECT_TRUE(names.insert(t.name).second) << t.name;
      EXPECT_EQ(t.layer >= 0, is_layer_kind(t.kind)) << t.name;
      const std::string suffix = tensor_kind_name(t.kind);
      EXPECT_EQ(t.name, t.layer < 0 ? suffix : "layers." + std::to_string(t.layer) + "." + suffix);
      EXPECT_EQ(t.dtype == DType::U8, suffix.find("blocks") != std::string::npos ||
                                          suffix.find("scales") != std::string::npos) << t.name;
    }
    EXPECT_EQ(s.front().name, "embedding");
    EXPECT_EQ(s[1].name, "layers.0.attn_norm");
    EXPECT_EQ(s[s.size() - 2].name, "norm");
    EXPECT_EQ(s.back().name, "unembedding");
  }
  // gpt-oss-20b, from its config (gpt-oss-spec.md): qkv rows (64 + 2 * 8) * 64 = 5120, experts
  // 32 x 2 * 2880 rows of 2880 / 32 blocks.
  const Config c = named_config("20b");
  EXPECT_EQ(tensor_spec(c, TensorKind::QkvWeight, 23).shape, (std::vector<int64_t>{5120, 2880}));
  EXPECT_EQ(tensor_spec(c, TensorKind::Mlp1Blocks, 0).shape, (std::vector<int64_t>{32, 5760, 90, 16}));
  EXPECT_EQ(tensor_spec(c, TensorKind::Mlp2Scales, 0).shape, (std::vector<int64_t>{32, 2880, 90}));
  EXPECT_EQ(tensor_spec(c, TensorKind::Unembedding).shape, (std::vector<int64_t>{201088, 2880}));
  EXPECT_THROW(tensor_spec(c, TensorKind::Sinks, 24), Error);  // 20b has layers 0..23
}

TEST(Schema, ModelFileByKindEqualsByName) {
  const Config c = named_config("micro");
  const std::string path = std::string(GPTOSS_TEST_DATA) + "/schema-test.bin";
  const std::vector<TensorSpec> s = tensor_schema(c);
  {
    ModelWriter w(path, c, "schema test", tensor_plan(c));
    for (const TensorSpec& t : s) w.write(t.name, std::vector<uint8_t>(t.bytes(), 1).data(), t.bytes());
    w.finish();
  }
  const ModelFile m(path);
  ASSERT_EQ(m.tensors().size(), s.size());
  for (size_t i = 0; i < s.size(); i++) {
    const TensorSpec& t = s[i];
    EXPECT_EQ(m.tensors()[i].name, t.name);  // file order = schema order
    const TensorInfo& info = m.tensor(t.kind, t.layer);
    EXPECT_EQ(&info, m.find(t.name)) << t.name;
    EXPECT_EQ(info.dtype, t.dtype);
    EXPECT_EQ(info.shape, t.shape);
    if (t.dtype == DType::U8) {
      EXPECT_EQ(m.data<uint8_t>(t.kind, t.layer), info.data);
      EXPECT_THROW(m.data<uint16_t>(t.kind, t.layer), Error);
    } else {
      EXPECT_EQ(static_cast<const void*>(m.data<uint16_t>(t.kind, t.layer)), info.data);
      EXPECT_THROW(m.data<uint8_t>(t.kind, t.layer), Error);
    }
  }
  EXPECT_THROW(m.tensor(TensorKind::Embedding, 0), Error);
  EXPECT_THROW(m.tensor(TensorKind::QkvWeight), Error);
  EXPECT_THROW(m.tensor(TensorKind::QkvWeight, c.n_layers), Error);
  std::remove(path.c_str());
}
